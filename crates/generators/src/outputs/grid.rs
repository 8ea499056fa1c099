//! A batch of 2–4 images as one picture: two columns, reading order (1 2 / 3 4), each image
//! scaled into its cell, the whole within Discord's upload limit.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{imageops, ImageFormat, Rgb, RgbImage};

use super::fit::{fit_image, FitError, Fitted};

/// Images a grid holds.
pub const GRID_IMAGES: std::ops::RangeInclusive<usize> = 2..=4;
/// The grid's longest side: enough to judge four images, small enough to load at once.
pub const GRID_MAX_SIDE: u32 = 2048;
/// Pixels between cells, so the images read as separate pictures.
const GAP: u32 = 8;
const COLUMNS: u32 = 2;
const BACKGROUND: Rgb<u8> = Rgb([24, 25, 28]);
/// Decoding budget per image (the saved outputs are the backend's own PNGs).
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Why no grid could be made; the caller posts the files one by one instead.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("a grid holds 2 to 4 images, not {0}")]
    Count(usize),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error(transparent)]
    Fit(#[from] FitError),
}

fn open(path: &Path) -> Result<RgbImage, GridError> {
    let read = |source| GridError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| read(image::ImageError::IoError(e)))?
        .with_guessed_format()
        .map_err(|e| read(image::ImageError::IoError(e)))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Ok(reader.decode().map_err(read)?.into_rgb8())
}

/// The grid of the images at `paths` (in order), as PNG when that fits `limit` bytes, else
/// as the smallest loss [`fit_image`] finds.
pub fn compose_grid(paths: &[PathBuf], limit: u64) -> Result<Fitted, GridError> {
    if !GRID_IMAGES.contains(&paths.len()) {
        return Err(GridError::Count(paths.len()));
    }
    let images = paths
        .iter()
        .map(|p| open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let n = images.len() as u32;
    let rows = n.div_ceil(COLUMNS);
    let cell_w = images.iter().map(RgbImage::width).max().unwrap_or(1);
    let cell_h = images.iter().map(RgbImage::height).max().unwrap_or(1);
    // The cells shrink so the grid, gaps included, stays within GRID_MAX_SIDE both ways.
    let room = |cells: u32| f64::from(GRID_MAX_SIDE - GAP * (cells - 1)) / f64::from(cells);
    let scale = (room(COLUMNS) / f64::from(cell_w))
        .min(room(rows) / f64::from(cell_h))
        .min(1.0);
    let sized = |x: u32| ((f64::from(x) * scale).floor() as u32).max(1);
    let (cw, ch) = (sized(cell_w), sized(cell_h));
    let mut grid = RgbImage::from_pixel(
        cw * COLUMNS + GAP * (COLUMNS - 1),
        ch * rows + GAP * (rows - 1),
        BACKGROUND,
    );
    for (i, img) in images.iter().enumerate() {
        let (col, row) = (i as u32 % COLUMNS, i as u32 / COLUMNS);
        let (w, h) = (sized(img.width()), sized(img.height()));
        let resized;
        let tile = if (w, h) == img.dimensions() {
            img
        } else {
            resized = imageops::resize(img, w, h, imageops::FilterType::Triangle);
            &resized
        };
        // Centred in its cell when the batch's sizes differ.
        let x = col * (cw + GAP) + (cw - w.min(cw)) / 2;
        let y = row * (ch + GAP) + (ch - h.min(ch)) / 2;
        imageops::replace(&mut grid, tile, i64::from(x), i64::from(y));
    }
    let mut png = Vec::new();
    grid.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(FitError::Encode)?;
    Ok(fit_image(&png, limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::FittedFormat;

    fn write(dir: &Path, i: usize, w: u32, h: u32, colour: [u8; 3]) -> PathBuf {
        let p = dir.join(format!("{i}.png"));
        RgbImage::from_pixel(w, h, Rgb(colour)).save(&p).unwrap();
        p
    }

    const COLOURS: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]];

    fn decode(f: &Fitted) -> RgbImage {
        image::load_from_memory(&f.bytes).unwrap().into_rgb8()
    }

    #[test]
    fn four_images_read_left_to_right_then_down() {
        let dir = crate::outputs::test_dir("grid4");
        let paths: Vec<_> = (0..4).map(|i| write(&dir, i, 64, 48, COLOURS[i])).collect();
        let g = compose_grid(&paths, 10 << 20).unwrap();
        assert_eq!(g.format, FittedFormat::Original, "a small grid stays PNG");
        let img = decode(&g);
        assert_eq!(img.dimensions(), (64 * 2 + GAP, 48 * 2 + GAP));
        let centre = |col: u32, row: u32| {
            img.get_pixel(col * (64 + GAP) + 32, row * (48 + GAP) + 24)
                .0
        };
        assert_eq!(centre(0, 0), COLOURS[0]);
        assert_eq!(centre(1, 0), COLOURS[1]);
        assert_eq!(centre(0, 1), COLOURS[2]);
        assert_eq!(centre(1, 1), COLOURS[3]);
        assert_eq!(
            img.get_pixel(64 + GAP / 2, 10).0,
            BACKGROUND.0,
            "a gap between cells"
        );
    }

    #[test]
    fn two_images_sit_side_by_side_and_large_ones_shrink() {
        let dir = crate::outputs::test_dir("grid2");
        let paths: Vec<_> = (0..2)
            .map(|i| write(&dir, i, 1536, 1024, COLOURS[i]))
            .collect();
        let img = decode(&compose_grid(&paths, 10 << 20).unwrap());
        assert_eq!(img.width(), GRID_MAX_SIDE);
        assert!(
            img.height() < img.width() / 2 + GAP,
            "{:?}",
            img.dimensions()
        );
        let three: Vec<_> = (0..3).map(|i| write(&dir, i, 40, 40, COLOURS[i])).collect();
        let img = decode(&compose_grid(&three, 10 << 20).unwrap());
        assert_eq!(img.dimensions(), (80 + GAP, 80 + GAP));
        assert_eq!(
            img.get_pixel(60, 60).0,
            BACKGROUND.0,
            "the fourth cell is empty"
        );
    }

    #[test]
    fn a_grid_over_the_limit_is_fitted_and_bad_input_is_an_error() {
        let dir = crate::outputs::test_dir("gridfit");
        let noisy: Vec<_> = (0..4)
            .map(|i| {
                let p = dir.join(format!("n{i}.png"));
                let img = RgbImage::from_fn(512, 512, |x, y| {
                    let v = (x * 31 + y * 17 + i * 7) as u8 ^ (x * y) as u8;
                    Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
                });
                img.save(&p).unwrap();
                p
            })
            .collect();
        let limit = 200_000;
        let g = compose_grid(&noisy, limit).unwrap();
        assert!(g.bytes.len() as u64 <= limit, "{} bytes", g.bytes.len());
        assert!(matches!(
            compose_grid(&noisy[..1], limit),
            Err(GridError::Count(1))
        ));
        let broken = dir.join("broken.png");
        std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = compose_grid(&[noisy[0].clone(), broken], limit).unwrap_err();
        assert!(matches!(e, GridError::Read { .. }), "{e}");
    }
}
