//! The `resize` transform against Pillow's antialiased bilinear resize, on the cases written by
//! `tools/golden/resize_golden.py`.

use image::{DynamicImage, ImageBuffer, Luma};
use medkd_data::{Normalization, Pipeline, Size, TransformSpec};

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    input: [u32; 2],
    output: [u32; 2],
    values: Vec<f32>,
}

/// The test image's 8-bit value at (y, x), as `pixel` in the script.
fn pixel(y: u32, x: u32) -> u8 {
    ((x * 7 + y * 13 + (x * y) % 11) % 256) as u8
}

#[test]
fn resize_matches_pillow_bilinear() {
    let golden: Golden = serde_json::from_str(include_str!("golden/resize.json"))
        .expect("tests/golden/resize.json is valid; regenerate it with tools/golden/resize_golden.py");
    for case in golden.cases {
        let [h, w] = case.input;
        let image = DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| Luma([pixel(y, x)])));
        let spec = TransformSpec::Resize { size: Size::HeightWidth(case.output) };
        let pipeline = Pipeline::new(&[spec], 1, Normalization::identity(1)).unwrap();
        let (values, shape) = pipeline.apply_seeded(&image, 0).unwrap();
        assert_eq!(shape, [1, case.output[0] as usize, case.output[1] as usize]);
        let worst = values.iter().zip(&case.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{h}x{w} -> {:?}: largest difference from Pillow {worst}", case.output);
    }
}
