//! DICOM images (dicom-rs): single-frame grayscale (MONOCHROME1/2) and RGB, 8 or 16 bits,
//! uncompressed or in a transfer syntax dicom-rs decodes in pure Rust (JPEG baseline/extended/
//! lossless, RLE, deflate).
//!
//! A file is DICOM by its `.dcm`/`.dicom` name, or by the Part 10 magic when it does not decode
//! as an image format (archives mislabel extensions).
//!
//! A sample goes through the modality LUT (rescale slope and intercept), then the VOI window
//! (`data.dicom_window`, else the file's first Window Center/Width, with DICOM's LINEAR function,
//! PS3.3 C.11.2.1.2.1), else the image's own min..max, to [0, 1]; MONOCHROME1 is inverted so
//! that bright is high. An 8-bit image without rescale or window keeps its bytes (so it reads as
//! the same pixels as a PNG of it); anything else becomes a 16-bit image.

use std::io::Read;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::open_file;
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::{DynamicImage, ImageBuffer, Luma, Rgb};

use crate::DataError;

/// A VOI window: `[center, width]` in modality units (after rescale), as DICOM's
/// Window Center and Window Width.
pub type DicomWindow = [f64; 2];

fn dicom_error(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Dicom { path: path.to_path_buf(), message: message.into() }
}

/// A `.dcm`/`.dicom` name.
pub(crate) fn is_dicom_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "dcm" | "dicom"))
}

/// The DICOM Part 10 magic, `DICM` at byte 128: for a DICOM file under another name, asked
/// only once the image formats have failed, so ordinary images are not read twice.
pub(crate) fn has_dicom_magic(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM"
}

/// Decodes a DICOM file as described in the module docs; `window` overrides the file's.
pub fn open_dicom(path: &Path, window: Option<DicomWindow>) -> Result<DynamicImage, DataError> {
    let object = open_file(path)
        .map_err(|e| dicom_error(path, format!("not a readable DICOM file: truncated, damaged or not DICOM Part 10 ({e})")))?;
    if object.element(tags::PIXEL_DATA).is_err() {
        return Err(dicom_error(path, "no Pixel Data element (7FE0,0010): not an image (an RT plan, report or other non-image object?)"));
    }
    let uid = object.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let name = TransferSyntaxRegistry.iter().find(|ts| ts.uid() == uid).map_or("unknown", |ts| ts.name());
    let pixels = object.decode_pixel_data().map_err(|e| {
        dicom_error(
            path,
            format!(
                "cannot decode the pixel data of transfer syntax {uid} ({name}): {e}. Uncompressed, JPEG (not 2000 or LS) and RLE \
                 are read; `gdcmconv --raw` (GDCM) or `dcmdjpeg` (DCMTK) writes an uncompressed copy"
            ),
        )
    })?;
    if pixels.number_of_frames() != 1 {
        return Err(dicom_error(
            path,
            format!("{} frames; medkd reads single-frame images (split the frames into files first)", pixels.number_of_frames()),
        ));
    }
    let photometric = pixels.photometric_interpretation().clone();
    let channels = match (&photometric, pixels.samples_per_pixel()) {
        (PhotometricInterpretation::Monochrome1 | PhotometricInterpretation::Monochrome2, 1) => 1,
        (PhotometricInterpretation::Rgb, 3) => 3,
        (other, samples) => {
            return Err(dicom_error(
                path,
                format!(
                    "photometric interpretation {other} with {samples} samples per pixel is not supported (MONOCHROME1, MONOCHROME2 and RGB are)"
                ),
            ));
        }
    };
    let (width, height) = (pixels.columns(), pixels.rows());
    let expected = width as usize * height as usize * channels;
    let values: Vec<f64> = pixels.to_vec().map_err(|e| dicom_error(path, format!("cannot read the pixel samples ({e})")))?;
    if values.len() != expected {
        return Err(dicom_error(
            path,
            format!("{} pixel samples for {width}x{height}x{channels}; the file is truncated or inconsistent", values.len()),
        ));
    }
    let rescale = pixels.rescale().map_err(|e| dicom_error(path, e.to_string()))?[0];
    let file_window = pixels.window().map_err(|e| dicom_error(path, e.to_string()))?.and_then(|w| w.first().copied());
    let window = window.or(file_window.map(|w| [w.center, w.width]));
    let inverted = photometric == PhotometricInterpretation::Monochrome1;
    let identity = rescale.slope == 1.0 && rescale.intercept == 0.0;
    if pixels.bits_allocated() == 8 && identity && window.is_none() {
        let bytes: Vec<u8> = values.iter().map(|&v| if inverted { 255 - v as u8 } else { v as u8 }).collect();
        return Ok(if channels == 1 {
            DynamicImage::ImageLuma8(ImageBuffer::<Luma<u8>, _>::from_raw(width, height, bytes).expect("length checked"))
        } else {
            DynamicImage::ImageRgb8(ImageBuffer::<Rgb<u8>, _>::from_raw(width, height, bytes).expect("length checked"))
        });
    }
    let unit = unit_scale(&values, window);
    let words: Vec<u16> =
        values.iter().map(|&v| unit(v)).map(|y| if inverted { 1.0 - y } else { y }).map(|y| (y * 65535.0).round() as u16).collect();
    Ok(if channels == 1 {
        DynamicImage::ImageLuma16(ImageBuffer::<Luma<u16>, _>::from_raw(width, height, words).expect("length checked"))
    } else {
        DynamicImage::ImageRgb16(ImageBuffer::<Rgb<u16>, _>::from_raw(width, height, words).expect("length checked"))
    })
}

/// Maps modality values to [0, 1]: DICOM's LINEAR window function, or the values' min..max.
fn unit_scale(values: &[f64], window: Option<DicomWindow>) -> impl Fn(f64) -> f64 {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    move |x: f64| match window {
        Some([center, width]) => {
            // PS3.3 C.11.2.1.2.1; a width below 1 is a threshold at the center.
            let width = width.max(1.0);
            if width == 1.0 {
                return if x > center - 0.5 { 1.0 } else { 0.0 };
            }
            (((x - (center - 0.5)) / (width - 1.0)) + 0.5).clamp(0.0, 1.0)
        }
        None if hi > lo => (x - lo) / (hi - lo),
        None => 0.0,
    }
}
