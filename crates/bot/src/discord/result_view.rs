//! A finished job as a Discord message: its text, its buttons and its files (a batch of 2–4
//! images as one grid picture; one image of it alone for U1–U4). The same message whether
//! the result is delivered, picked from a grid or shown again with `/show`.

use generators::outputs::{compose_grid, fit_file_for_upload, Upload, GRID_IMAGES};
use generators::{JobRecord, OutputKind, SavedOutput};
use poise::serenity_prelude as serenity;
use serenity::{CreateActionRow, CreateAttachment};

use super::buttons;
use super::render::{self, MAX_CONTENT_CHARS, MAX_FILES_PER_MESSAGE};
use super::Data;

/// The grid's file name, before its extension.
const GRID_STEM: &str = "grid";

/// What a result message carries; files past the first ten go in further messages.
#[derive(Debug, Default)]
pub struct ResultMessage {
    pub content: String,
    pub rows: Vec<CreateActionRow>,
    pub chunks: Vec<Vec<CreateAttachment>>,
}

fn file_name(o: &SavedOutput) -> String {
    o.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into())
}

/// Files to upload and the ones too large for the channel. `Some(i)`: image `i` alone.
/// Otherwise a result of 2–4 images (and nothing else) becomes one grid picture; if the grid
/// cannot be made, the images go as they are.
fn prepare_uploads(
    outputs: &[SavedOutput],
    limit: u64,
    image: Option<usize>,
) -> (Vec<CreateAttachment>, Vec<(String, u64)>) {
    let images: Vec<&SavedOutput> = outputs
        .iter()
        .filter(|o| o.kind == OutputKind::Image)
        .collect();
    // Text outputs are shown in the message itself.
    let chosen: Vec<&SavedOutput> = match image {
        Some(i) => images.get(i).copied().into_iter().collect(),
        None => outputs
            .iter()
            .filter(|o| o.kind != OutputKind::Text)
            .collect(),
    };
    if image.is_none() && images.len() == outputs.len() && GRID_IMAGES.contains(&images.len()) {
        let paths: Vec<_> = images.iter().map(|o| o.path.clone()).collect();
        match compose_grid(&paths, limit) {
            Ok(grid) => {
                let ext = grid.format.extension().unwrap_or("png");
                let file = CreateAttachment::bytes(grid.bytes, format!("{GRID_STEM}.{ext}"));
                return (vec![file], Vec::new());
            }
            Err(e) => tracing::warn!(error = %e, "no grid for a batch; posting its images"),
        }
    }
    let mut files = Vec::new();
    let mut too_large = Vec::new();
    for o in chosen {
        match fit_file_for_upload(&o.path, o.kind, limit) {
            Ok(Upload::File { name, bytes, .. }) => {
                files.push(CreateAttachment::bytes(bytes, name))
            }
            Ok(Upload::TooLarge { size, .. }) => too_large.push((file_name(o), size)),
            Err(e) => {
                tracing::warn!(path = %o.path.display(), error = %e, "output cannot be uploaded");
                too_large.push((file_name(o), o.bytes));
            }
        }
    }
    (files, too_large)
}

/// The message of `record`'s result under an upload `limit`; `image` picks one image of a
/// batch. `source_link` points at what it came from.
pub async fn result_message(
    data: &Data,
    record: &JobRecord,
    image: Option<usize>,
    limit: u64,
    source_link: Option<&str>,
) -> ResultMessage {
    let outputs = record.outputs.clone();
    let (files, too_large) =
        tokio::task::spawn_blocking(move || prepare_uploads(&outputs, limit, image))
            .await
            .unwrap_or_default();
    let mut content = render::result_content(record, source_link, &too_large, limit);
    if let Some(i) = image {
        let total = record
            .outputs
            .iter()
            .filter(|o| o.kind == OutputKind::Image)
            .count();
        content = render::truncate_chars(
            &format!("Image {} of {total} · {content}", i + 1),
            MAX_CONTENT_CHARS,
        );
    }
    let offers = data.kinds().offers(record);
    if offers.prompts > 0 {
        let prompts = generators::kinds::describe::described_prompts(record);
        content = render::truncate_chars(
            &format!("{}\n{content}", render::described_list(&prompts)),
            MAX_CONTENT_CHARS,
        );
    }
    let rows = buttons::result_rows(&record.id, offers, image);
    ResultMessage {
        content,
        rows,
        chunks: files
            .chunks(MAX_FILES_PER_MESSAGE)
            .map(<[_]>::to_vec)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(dir: &std::path::Path, name: &str, w: u32) -> SavedOutput {
        let path = dir.join(name);
        image::RgbImage::new(w, 32).save(&path).unwrap();
        SavedOutput {
            kind: OutputKind::Image,
            bytes: std::fs::metadata(&path).unwrap().len(),
            path,
            sidecar: None,
        }
    }

    fn names(files: &[CreateAttachment]) -> Vec<String> {
        files.iter().map(|f| f.filename.clone()).collect()
    }

    #[test]
    fn a_batch_goes_as_one_grid_and_a_pick_as_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let four: Vec<_> = (0..4)
            .map(|i| png(dir.path(), &format!("{i}.png"), 32 + i))
            .collect();
        let (files, late) = prepare_uploads(&four, 10 << 20, None);
        assert_eq!(
            (names(&files), late.len()),
            (vec!["grid.png".to_string()], 0)
        );
        let (files, _) = prepare_uploads(&four, 10 << 20, Some(2));
        assert_eq!(names(&files), ["2.png"]);
        let (files, _) = prepare_uploads(&four[..1], 10 << 20, None);
        assert_eq!(names(&files), ["0.png"], "one image is not a grid");
        let five: Vec<_> = (0..5)
            .map(|i| png(dir.path(), &format!("f{i}.png"), 32))
            .collect();
        assert_eq!(
            prepare_uploads(&five, 10 << 20, None).0.len(),
            5,
            "past 4: the files"
        );
        let (files, _) = prepare_uploads(&four, 10 << 20, Some(7));
        assert!(files.is_empty());
    }
}
