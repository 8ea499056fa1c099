//! Fitting a 4096 × 4096 render saved as PNG under Discord's 10 MiB upload limit: the time
//! of one `fit_image` call, and which step of the ladder won.
//! `cargo bench -p generators --bench fit -- --warm-up-time 1 --measurement-time 10`.

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use generators::outputs::fit_image;
use image::{DynamicImage, ImageFormat, RgbImage};

const SIDE: u32 = 4096;
const LIMIT: u64 = 10 * 1024 * 1024;

/// A smooth gradient plus deterministic noise (a fixed xorshift), like an upscaled render:
/// the noise keeps the PNG from compressing to nothing.
fn render_png() -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 59) as u32 // 0..=31
    };
    let image = RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let base = [
            x * 200 / SIDE,
            y * 200 / SIDE,
            (x + y) * 100 / (2 * SIDE) + 60,
        ];
        image::Rgb(base.map(|c| (c + noise()).min(255) as u8))
    });
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("encode the bench PNG");
    png
}

fn bench_fit(c: &mut Criterion) {
    let png = render_png();
    let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
    println!(
        "input: {SIDE}x{SIDE} PNG, {} bytes ({:.1} MiB), limit {LIMIT} bytes (10 MiB)",
        png.len(),
        mib(png.len())
    );
    assert!(png.len() as u64 > LIMIT, "the input must be over the limit");

    let started = Instant::now();
    let fitted = fit_image(&png, LIMIT).expect("fit the bench PNG");
    println!(
        "won: {:?}, {}x{}, scaled: {}, {} bytes ({:.1} MiB), first run {:?}",
        fitted.format,
        fitted.width,
        fitted.height,
        fitted.scaled,
        fitted.bytes.len(),
        mib(fitted.bytes.len()),
        started.elapsed()
    );

    let mut group = c.benchmark_group("fit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("fit_image 4096x4096 png under 10 MiB", |b| {
        b.iter(|| fit_image(black_box(&png), black_box(LIMIT)).expect("fits"))
    });
    group.finish();
}

criterion_group!(benches, bench_fit);
criterion_main!(benches);
