//! Zoom Out, Make Square and Pan as outpainting: the padding each side gets, computed from the
//! image's size. Pure; the outpaint workflow receives the four numbers.

/// ComfyUI pads in steps of 8 pixels (`ImagePadForOutpaint`), the latent's grid.
pub const PAD_STEP: u32 = 8;
/// No side of a reframed image grows past this (the example workflow's bound per side is
/// 2048 px of padding; a 4096 px picture is already more than a CPU or a small GPU wants).
pub const MAX_REFRAMED_SIDE: u32 = 4096;
/// A pan extends the picture by this share of its side in that direction.
const PAN_SHARE: f64 = 0.5;

/// Which way Pan extends the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
}

/// How a picture is reframed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reframe {
    /// The picture shrinks to 1/1.5 of the frame, centred.
    ZoomOut15,
    /// The picture shrinks to half of the frame, centred.
    ZoomOut2,
    /// The short side grows to the long one, centred.
    Square,
    Pan(Direction),
}

/// Pixels added on each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Padding {
    /// The size of a `w`×`h` picture with this padding.
    pub fn size_of(&self, w: u32, h: u32) -> (u32, u32) {
        (w + self.left + self.right, h + self.top + self.bottom)
    }
}

/// `x` rounded to the nearest multiple of [`PAD_STEP`].
fn round_step(x: f64) -> u32 {
    ((x / f64::from(PAD_STEP)).round() as u32) * PAD_STEP
}

/// `total` split into two multiples of [`PAD_STEP`], the first no larger than the second.
fn split(total: u32) -> (u32, u32) {
    let first = (total / 2) / PAD_STEP * PAD_STEP;
    (first, total - first)
}

impl Reframe {
    /// The padding for a `w`×`h` picture; the message says why not, fit to show the member.
    pub fn padding(self, w: u32, h: u32) -> Result<Padding, String> {
        if w == 0 || h == 0 {
            return Err("The image has no size.".into());
        }
        let mut p = Padding::default();
        match self {
            Reframe::ZoomOut15 | Reframe::ZoomOut2 => {
                let factor = if self == Reframe::ZoomOut15 { 1.5 } else { 2.0 };
                (p.left, p.right) = split(round_step(f64::from(w) * (factor - 1.0)));
                (p.top, p.bottom) = split(round_step(f64::from(h) * (factor - 1.0)));
            }
            Reframe::Square => {
                let gap = w.abs_diff(h);
                if round_step(f64::from(gap)) == 0 {
                    return Err("The image is already square.".into());
                }
                // Up to the next step, so the short side reaches the long one.
                let gap = gap.div_ceil(PAD_STEP) * PAD_STEP;
                if w > h {
                    (p.top, p.bottom) = split(gap);
                } else {
                    (p.left, p.right) = split(gap);
                }
            }
            Reframe::Pan(d) => {
                let across = |side: u32| round_step(f64::from(side) * PAN_SHARE).max(PAD_STEP);
                match d {
                    Direction::Left => p.left = across(w),
                    Direction::Right => p.right = across(w),
                    Direction::Up => p.top = across(h),
                    Direction::Down => p.bottom = across(h),
                }
            }
        }
        let (nw, nh) = p.size_of(w, h);
        if nw.max(nh) > MAX_REFRAMED_SIDE {
            return Err(format!(
                "The image is {w}×{h}; reframed it would be {nw}×{nh}, over the {MAX_REFRAMED_SIDE} px this bot allows. Try it on a smaller image."
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(l: u32, t: u32, r: u32, b: u32) -> Padding {
        Padding {
            left: l,
            top: t,
            right: r,
            bottom: b,
        }
    }

    #[test]
    fn zoom_out_centres_the_picture_in_a_larger_frame() {
        assert_eq!(
            Reframe::ZoomOut2.padding(512, 512),
            Ok(pad(256, 256, 256, 256))
        );
        assert_eq!(
            Reframe::ZoomOut15.padding(512, 512),
            Ok(pad(128, 128, 128, 128))
        );
        // 512×768 at 1.5: 256 and 384 more, split so both halves stay on the 8 px grid.
        assert_eq!(
            Reframe::ZoomOut15.padding(512, 768),
            Ok(pad(128, 192, 128, 192))
        );
        // 64×48 at 1.5: 32 and 24 more; 24 splits as 8 + 16.
        assert_eq!(Reframe::ZoomOut15.padding(64, 48), Ok(pad(16, 8, 16, 16)));
    }

    #[test]
    fn make_square_grows_the_short_side() {
        assert_eq!(Reframe::Square.padding(768, 512), Ok(pad(0, 128, 0, 128)));
        assert_eq!(Reframe::Square.padding(512, 768), Ok(pad(128, 0, 128, 0)));
        // 64×44: 20 short, padded to 24 (the next step), so the frame is at least square.
        let p = Reframe::Square.padding(64, 44).unwrap();
        assert_eq!(p, pad(0, 8, 0, 16));
        let (w, h) = p.size_of(64, 44);
        assert!(h >= w, "{w}×{h}");
        assert!(Reframe::Square
            .padding(512, 512)
            .unwrap_err()
            .contains("already square"));
        assert!(
            Reframe::Square.padding(512, 515).is_err(),
            "3 px off is square enough"
        );
    }

    #[test]
    fn pan_extends_one_side_by_half() {
        assert_eq!(
            Reframe::Pan(Direction::Left).padding(512, 384),
            Ok(pad(256, 0, 0, 0))
        );
        assert_eq!(
            Reframe::Pan(Direction::Right).padding(512, 384),
            Ok(pad(0, 0, 256, 0))
        );
        assert_eq!(
            Reframe::Pan(Direction::Up).padding(512, 384),
            Ok(pad(0, 192, 0, 0))
        );
        assert_eq!(
            Reframe::Pan(Direction::Down).padding(512, 384),
            Ok(pad(0, 0, 0, 192))
        );
        assert_eq!(
            Reframe::Pan(Direction::Left).padding(8, 8),
            Ok(pad(8, 0, 0, 0))
        );
    }

    #[test]
    fn every_padding_is_on_the_grid_and_bounded() {
        for w in (8..=2048).step_by(40) {
            for h in (8..=2048).step_by(56) {
                for r in [
                    Reframe::ZoomOut15,
                    Reframe::ZoomOut2,
                    Reframe::Square,
                    Reframe::Pan(Direction::Up),
                    Reframe::Pan(Direction::Right),
                ] {
                    let Ok(p) = r.padding(w, h) else { continue };
                    for side in [p.left, p.top, p.right, p.bottom] {
                        assert_eq!(side % PAD_STEP, 0, "{r:?} {w}×{h}: {p:?}");
                    }
                    let (nw, nh) = p.size_of(w, h);
                    assert!(nw >= w && nh >= h && nw.max(nh) <= MAX_REFRAMED_SIDE);
                }
            }
        }
        let e = Reframe::ZoomOut2.padding(3000, 1000).unwrap_err();
        assert!(e.contains("3000×1000") && e.contains("6000×2000"), "{e}");
    }
}
