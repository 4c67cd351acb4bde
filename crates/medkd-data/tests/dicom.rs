//! DICOM input against pydicom (tools/golden/dicom_golden.py): real files from pydicom's wheel
//! (CT with rescale, MR with a window, RGB) and files made from a real BreastMNIST image
//! (MONOCHROME1/2, signed 16-bit with rescale and window); unsupported and broken files refused
//! naming the file and what is wrong.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use medkd_data::{DataFormat, open_dicom, open_image};

mod common;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom")
}

/// The decoded samples, row-major and interleaved, as integers.
fn samples(image: &DynamicImage) -> (&'static str, Vec<i64>, Vec<usize>) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    match image {
        DynamicImage::ImageLuma8(b) => ("u8", b.as_raw().iter().map(|&v| v.into()).collect(), vec![h, w]),
        DynamicImage::ImageRgb8(b) => ("u8", b.as_raw().iter().map(|&v| v.into()).collect(), vec![h, w, 3]),
        DynamicImage::ImageLuma16(b) => ("u16", b.as_raw().iter().map(|&v| v.into()).collect(), vec![h, w]),
        DynamicImage::ImageRgb16(b) => ("u16", b.as_raw().iter().map(|&v| v.into()).collect(), vec![h, w, 3]),
        other => panic!("unexpected image type {:?}", other.color()),
    }
}

#[test]
fn pixels_match_pydicom() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let window = case["window"].as_array().map(|w| [w[0].as_f64().unwrap(), w[1].as_f64().unwrap()]);
        let image = open_dicom(&dir().join(file), window).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (kind, values, shape) = samples(&image);
        assert_eq!(kind, case["kind"], "{file}");
        let expected_shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        // pydicom gives a gray image as rows x columns.
        assert_eq!(shape, expected_shape, "{file}");
        let every = case["every"].as_u64().unwrap() as usize;
        let ours: Vec<i64> = values.iter().step_by(every).copied().collect();
        let theirs: Vec<i64> = case["values"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        // Windowed values may round the other way at a .5 (float64 order of operations).
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).max().unwrap();
        assert!(worst <= 1, "{file} (window {window:?}): differs from pydicom by up to {worst}");
        let sum: i64 = values.iter().sum();
        assert!((sum - case["sum"].as_i64().unwrap()).abs() <= values.len() as i64 / 100, "{file}: sum {sum}");
    }
}

#[test]
fn an_eight_bit_dicom_reads_as_the_same_pixels_as_the_image_itself() {
    let npz = medkd_data::open_medmnist(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz"), None).unwrap();
    let original = medkd_data::ImageDataset::image(&npz[2], 0).unwrap().to_luma8();
    for file in ["breast_mono2.dcm", "breast_mono1.dcm"] {
        // open_image knows a DICOM by its content and name.
        let decoded = open_image(&dir().join(file)).unwrap();
        assert_eq!(decoded.to_luma8(), original, "{file}");
    }
}

#[test]
fn unsupported_and_broken_files_are_refused_naming_the_file() {
    for (file, expected) in [
        ("rtplan.dcm", "no Pixel Data element"),
        ("MR_truncated.dcm", "truncated, damaged"),
        ("JPEG2000.dcm", "transfer syntax 1.2.840.10008.1.2.4.91 (JPEG 2000 Image Compression)"),
        ("SC_rgb_rle_2frame.dcm", "2 frames"),
        ("breast_palette.dcm", "photometric interpretation PALETTE COLOR"),
    ] {
        let message = open_dicom(&dir().join(file), None).unwrap_err().to_string();
        assert!(message.contains(file) && message.contains(expected), "{file}: {message}");
    }
    // A DICOM file under an image name is known by its magic once the image formats fail.
    let renamed = tempfile::tempdir().unwrap();
    let jpg = renamed.path().join("breast.jpg");
    std::fs::copy(dir().join("breast_mono2.dcm"), &jpg).unwrap();
    assert_eq!(open_image(&jpg).unwrap().to_luma8(), open_image(&dir().join("breast_mono2.dcm")).unwrap().to_luma8());
    let not_dicom = tempfile::tempdir().unwrap();
    let path = not_dicom.path().join("scan.dcm");
    std::fs::write(&path, b"not a dicom file at all").unwrap();
    let message = open_image(&path).unwrap_err().to_string();
    assert!(message.contains("scan.dcm") && message.contains("not a readable DICOM file"), "{message}");
}

#[test]
fn a_dicom_window_must_be_a_window_on_image_files() {
    let mut config = common::config(DataFormat::Folder, Path::new("unused"));
    config.dicom_window = Some([40.0, 0.0]);
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("`dicom_window` = [40, 0]") && message.contains("width > 0"), "{message}");
    let mut config = common::config(DataFormat::Medmnist, Path::new("unused.npz"));
    config.dicom_window = Some([40.0, 400.0]);
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("`dicom_window` applies to DICOM files"), "{message}");
}
