//! Transform geometry, colour, channel conversion, bit depth, normalization and config parsing.

mod common;

use common::{Synthetic, config, gray, medmnist};
use image::{DynamicImage, ImageBuffer, Luma, Rgb, RgbImage};
use medkd_data::{
    DataConfig, DataFormat, Normalization, NormalizeConfig, Pipeline, Size, SplitConfig, TransformSpec, build_pipelines, open_splits,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn run(specs: &[TransformSpec], channels: usize, img: &DynamicImage) -> (Vec<f32>, [usize; 3]) {
    let pipeline = Pipeline::new(specs, channels, Normalization::identity(channels)).unwrap();
    pipeline.apply_with_shape(img, &mut ChaCha8Rng::seed_from_u64(7)).unwrap()
}

/// 8-bit pixel values back from [0, 1] floats.
fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().map(|x| (x * 255.0).round() as u8).collect()
}

#[test]
fn flips_reverse_columns_and_rows() {
    let img = gray(4, 3, |x, y| (10 * y + x) as u8);
    let (out, shape) = run(&[TransformSpec::Hflip { p: 1.0 }], 1, &img);
    assert_eq!(shape, [1, 3, 4]);
    assert_eq!(bytes(&out), [3, 2, 1, 0, 13, 12, 11, 10, 23, 22, 21, 20]);
    let (out, _) = run(&[TransformSpec::Vflip { p: 1.0 }], 1, &img);
    assert_eq!(bytes(&out), [20, 21, 22, 23, 10, 11, 12, 13, 0, 1, 2, 3]);
    let (out, _) = run(&[TransformSpec::Hflip { p: 0.0 }], 1, &img);
    assert_eq!(bytes(&out), [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
}

#[test]
fn resize_output_sizes() {
    let img = gray(40, 20, |x, _| x as u8);
    let resize = |size| [TransformSpec::Resize { size }];
    assert_eq!(run(&resize(Size::Edge(10)), 1, &img).1, [1, 10, 20], "shorter side to 10");
    assert_eq!(run(&resize(Size::HeightWidth([7, 9])), 1, &img).1, [1, 7, 9]);
    let tall = gray(20, 45, |_, y| y as u8);
    assert_eq!(run(&resize(Size::Edge(10)), 1, &tall).1, [1, 22, 10], "longer side truncated");
    // A constant image stays constant under bilinear resizing.
    let flat = gray(30, 30, |_, _| 128);
    let (out, _) = run(&resize(Size::Edge(8)), 1, &flat);
    assert!(bytes(&out).iter().all(|&v| v == 128));
}

#[test]
fn center_crop_picks_the_center_and_pads() {
    let img = gray(6, 6, |x, y| (10 * y + x) as u8);
    let (out, shape) = run(&[TransformSpec::CenterCrop { size: Size::Edge(2) }], 1, &img);
    assert_eq!(shape, [1, 2, 2]);
    assert_eq!(bytes(&out), [22, 23, 32, 33]);
    let small = gray(2, 2, |x, y| (1 + 2 * y + x) as u8);
    let (out, _) = run(&[TransformSpec::CenterCrop { size: Size::Edge(4) }], 1, &small);
    #[rustfmt::skip]
    assert_eq!(bytes(&out), [0, 0, 0, 0,  0, 1, 2, 0,  0, 3, 4, 0,  0, 0, 0, 0]);
}

#[test]
fn random_resized_crop_size_and_full_crop() {
    let img = gray(50, 30, |x, y| (x + y) as u8);
    let spec = TransformSpec::RandomResizedCrop { size: Size::Edge(16), scale: [0.3, 1.0], ratio: [0.75, 1.333] };
    assert_eq!(run(&[spec], 1, &img).1, [1, 16, 16]);
    // Scale 1 and ratio 1 on a square image can only pick the whole image.
    let square = gray(12, 12, |x, y| (x * 12 + y) as u8);
    let spec = TransformSpec::RandomResizedCrop { size: Size::Edge(12), scale: [1.0, 1.0], ratio: [1.0, 1.0] };
    assert_eq!(run(&[spec], 1, &square).0, run(&[], 1, &square).0);
    // An aspect ratio no crop can satisfy falls back to the centred crop.
    let spec = TransformSpec::RandomResizedCrop { size: Size::HeightWidth([6, 12]), scale: [1.0, 1.0], ratio: [2.0, 2.0] };
    let (out, _) = run(&[spec], 1, &square);
    let expected = run(&[TransformSpec::CenterCrop { size: Size::HeightWidth([6, 12]) }], 1, &square).0;
    assert_eq!(out, expected);
}

#[test]
fn rotation_keeps_the_centre_and_fills_corners_with_zero() {
    let img = gray(9, 9, |_, _| 200);
    let (out, _) = run(&[TransformSpec::Rotation { degrees: 45.0, p: 1.0 }], 1, &img);
    let out = bytes(&out);
    assert_eq!(out[4 * 9 + 4], 200);
    let (zero, _) = run(&[TransformSpec::Rotation { degrees: 0.0, p: 1.0 }], 1, &img);
    assert_eq!(bytes(&zero), vec![200; 81]);
    // At 45 degrees the corners come from outside the image.
    assert_eq!(out[0], 0);
}

#[test]
fn color_jitter_follows_torchvision() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 20) as u8, (y * 20) as u8, 60])));
    let brightness = TransformSpec::ColorJitter { brightness: 0.5, contrast: 0.0, saturation: 0.0, hue: 0.0 };
    let (base, _) = run(&[], 3, &img);
    let (out, _) = run(&[brightness], 3, &img);
    // One factor in [0.5, 1.5] scales every value (none clips: inputs are below 0.6).
    let factor = out[5] / base[5];
    assert!((0.5..=1.5).contains(&factor) && factor != 1.0);
    for (o, b) in out.iter().zip(&base) {
        assert!((o - b * factor).abs() < 1e-5);
    }
    // Hue and saturation leave gray pixels alone.
    let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 4, Rgb([90, 90, 90])));
    let hs = TransformSpec::ColorJitter { brightness: 0.0, contrast: 0.0, saturation: 0.9, hue: 0.5 };
    assert_eq!(bytes(&run(std::slice::from_ref(&hs), 3, &grey).0), vec![90; 48]);
    // Contrast blends toward the mean: the spread shrinks or grows, the mean is kept.
    let contrast = TransformSpec::ColorJitter { brightness: 0.0, contrast: 0.8, saturation: 0.0, hue: 0.0 };
    let ramp = gray(10, 1, |x, _| 50 + 10 * x as u8);
    let (out, _) = run(&[contrast], 1, &ramp);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (base, _) = run(&[], 1, &ramp);
    assert!((mean(&out) - mean(&base)).abs() < 1e-5);
    // A hue shift moves a saturated colour to another one with the same value.
    let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([255, 0, 0])));
    let hue = TransformSpec::ColorJitter { brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.5 };
    let (out, _) = run(&[hue], 3, &red);
    let px = [out[0], out[4], out[8]];
    assert!((px.iter().cloned().fold(0.0, f32::max) - 1.0).abs() < 1e-5 && px != [1.0, 0.0, 0.0], "{px:?}");
}

#[test]
fn grayscale_expands_to_three_channels_and_rgb_reduces_to_luminance() {
    let splits = open_splits(&config(DataFormat::Medmnist, &medmnist("breastmnist")), "/".as_ref()).unwrap();
    let img = splits.train.image(0).unwrap();
    let (out, shape) = run(&[], 3, &img);
    assert_eq!(shape, [3, 28, 28]);
    let plane = 28 * 28;
    assert_eq!(out[..plane], out[plane..2 * plane]);
    assert_eq!(out[..plane], out[2 * plane..]);
    assert_eq!(bytes(&out[..plane]), img.to_luma8().into_raw());

    let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 3, Rgb([255, 0, 0])));
    let (out, shape) = run(&[], 1, &red);
    assert_eq!(shape, [1, 3, 3]);
    assert!((out[0] - 0.299).abs() < 1e-6);
}

#[test]
fn sixteen_bit_png_is_scaled_by_65535() {
    let dir = tempfile::tempdir().unwrap();
    // A folder dataset of 16-bit PNGs: two classes, two images each.
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..2u16 {
            let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(3, 1, |x, _| Luma([[i, 65535 - i, 32768][x as usize]]));
            img.save(dir.path().join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let mut cfg = config(DataFormat::Folder, dir.path());
    cfg.split = Some(SplitConfig { val: 0.0, test: 0.0, seed: 0, ..Default::default() });
    let s = open_splits(&cfg, "/".as_ref()).unwrap();
    assert_eq!(s.train.len(), 4);
    assert_eq!(s.train.info().channels, 1);
    let img = s.train.image(0).unwrap();
    assert!(matches!(img, DynamicImage::ImageLuma16(_)));
    let (out, _) = run(&[], 1, &img);
    assert_eq!(out[1], 1.0);
    assert!((out[2] - 32768.0 / 65535.0).abs() < 1e-6);
    assert_eq!(out[0], 0.0);
    // 16-bit TIFF takes the same path.
    let tiff: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(2, 1, |x, _| Luma([[65535, 16384][x as usize]]));
    let tiff_path = dir.path().join("scan.tif");
    tiff.save(&tiff_path).unwrap();
    let (out, _) = run(&[], 1, &image::open(&tiff_path).unwrap());
    assert_eq!(out[0], 1.0);
    assert!((out[1] - 16384.0 / 65535.0).abs() < 1e-6);
}

#[test]
fn normalization_kinds() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([128, 128, 128])));
    let v = 128.0 / 255.0;
    let imagenet = Pipeline::new(&[], 3, Normalization::imagenet(3)).unwrap();
    let out = imagenet.apply(&img, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert!((out[0] - (v - 0.485) / 0.229).abs() < 1e-5);
    assert!((out[11] - (v - 0.406) / 0.225).abs() < 1e-5);
    let custom = Normalization { mean: vec![0.5], std: vec![0.25] };
    let out = Pipeline::new(&[], 1, custom.clone()).unwrap().apply(&img, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert!((out[0] - (v - 0.5) / 0.25).abs() < 1e-5);
    let msg = Pipeline::new(&[], 3, custom).unwrap_err().to_string();
    assert!(msg.contains("3 output channels"), "{msg}");
    let msg = Pipeline::new(&[], 1, Normalization { mean: vec![0.5], std: vec![0.0] }).unwrap_err().to_string();
    assert!(msg.contains("std"), "{msg}");

    // Dataset statistics: exact mean and std of the synthetic train images.
    let ds = Synthetic::new(5, 4);
    let mut cfg = config(DataFormat::Folder, "unused".as_ref());
    cfg.normalize = NormalizeConfig::Dataset {};
    let pipelines = build_pipelines(&cfg, &ds).unwrap();
    let values: Vec<f64> = (0..5usize)
        .flat_map(|i| (0..4u32).flat_map(move |y| (0..4u32).map(move |x| ((i as u32 * 7 + x * 3 + y) % 256) as f64 / 255.0)))
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    let n = pipelines.eval.normalization();
    assert!((f64::from(n.mean[0]) - mean).abs() < 1e-5 && (f64::from(n.std[0]) - std).abs() < 1e-5, "{n:?}");
    assert_eq!(pipelines.train.normalization(), n);
}

#[test]
fn bad_transform_parameters_name_op_and_field() {
    let cases = [
        (TransformSpec::Hflip { p: 1.5 }, "`hflip`", "`p`"),
        (TransformSpec::Resize { size: Size::HeightWidth([0, 4]) }, "`resize`", "`size`"),
        (
            TransformSpec::RandomResizedCrop { size: Size::Edge(8), scale: [0.9, 0.5], ratio: [0.75, 1.33] },
            "`random_resized_crop`",
            "`scale`",
        ),
        (
            TransformSpec::RandomResizedCrop { size: Size::Edge(8), scale: [0.5, 0.9], ratio: [1.33, 0.75] },
            "`random_resized_crop`",
            "`ratio`",
        ),
        (TransformSpec::ColorJitter { brightness: 0.1, contrast: 0.0, saturation: 0.0, hue: 0.7 }, "`color_jitter`", "`hue`"),
        (TransformSpec::Rotation { degrees: -5.0, p: 1.0 }, "`rotation`", "`degrees`"),
    ];
    for (spec, op, field) in cases {
        let msg = Pipeline::new(&[spec], 1, Normalization::identity(1)).unwrap_err().to_string();
        assert!(msg.contains(op) && msg.contains(field), "{msg}");
    }
}

const EXAMPLE: &str = r#"
[data]
format = "csv"
path = "../shared/data/ham10000/labels.csv"
image_dir = "images"
image_column = "image_id"
image_ext = "jpg"
label_column = "dx"
classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
task = "multiclass"
channels = 3

[data.split]
val = 0.15
test = 0.15
seed = 0

[[data.train_transforms]]
op = "random_resized_crop"
size = 64
scale = [0.5, 1.0]
ratio = [0.75, 1.333]

[[data.train_transforms]]
op = "hflip"
p = 0.5

[[data.eval_transforms]]
op = "resize"
size = [64, 64]

[data.normalize]
kind = "custom"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
"#;

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TrainConfig {
    data: DataConfig,
}

#[test]
fn toml_config_parses_and_rejects_unknown_keys() {
    let cfg: TrainConfig = toml::from_str(EXAMPLE).unwrap();
    let data = cfg.data;
    assert_eq!(data.format, DataFormat::Csv);
    assert_eq!(data.train_transforms.len(), 2);
    assert_eq!(data.train_transforms[1], TransformSpec::Hflip { p: 0.5 });
    assert_eq!(data.eval_transforms[0], TransformSpec::Resize { size: Size::HeightWidth([64, 64]) });
    assert!(matches!(data.normalize, NormalizeConfig::Custom { .. }));
    data.validate().unwrap();
    // The example's relative path resolves against the repository root.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let s = open_splits(&data, &repo).unwrap();
    let pipelines = build_pipelines(&data, s.train.as_ref()).unwrap();
    let out = pipelines.train.apply_with_shape(&s.train.image(0).unwrap(), &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    assert_eq!(out.1, [3, 64, 64]);

    for (from, to) in [
        ("image_ext = \"jpg\"", "image_extension = \"jpg\""),
        ("p = 0.5", "p = 0.5\nprobability = 1"),
        ("seed = 0", "seed = 0\nshuffle = true"),
        ("kind = \"custom\"", "kind = \"custom\"\nscale = 2"),
        ("op = \"hflip\"", "op = \"hflipp\""),
    ] {
        let bad = EXAMPLE.replace(from, to);
        assert!(toml::from_str::<TrainConfig>(&bad).is_err(), "accepted: {to}");
    }
    let mut medmnist_cfg: DataConfig = toml::from_str("format = \"medmnist\"\npath = \"x.npz\"\nimage_ext = \"png\"").unwrap();
    assert!(medmnist_cfg.validate().unwrap_err().to_string().contains("`image_ext`"));
    medmnist_cfg.image_ext = None;
    medmnist_cfg.channels = Some(2);
    assert!(medmnist_cfg.validate().unwrap_err().to_string().contains("channels = 2"));
    let defaults: DataConfig = toml::from_str("format = \"folder\"\npath = \"x\"\n[normalize]\nkind = \"imagenet\"").unwrap();
    assert_eq!(defaults.normalize, NormalizeConfig::Imagenet {});
    assert!(toml::from_str::<DataConfig>("format = \"folder\"\npath = \"x\"\n[normalize]\nkind = \"imagenet\"\nmean = [1]").is_err());
}
