//! Image transforms with torchvision semantics, and the [`Pipeline`] that turns a decoded image
//! into a normalized CHW `f32` tensor.
//!
//! Images are worked on as one `f32` plane per channel with values in [0, 1] (16-bit images are
//! scaled by 65535 on conversion), so every geometric op is written once for any channel count.

mod boxes;
mod color;
mod geometry;
mod normalize;

use std::sync::Arc;

use image::{DynamicImage, ImageBuffer, Luma};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::DataConfig;
use crate::{DataError, ImageDataset};

pub use normalize::Normalization;

/// One channel of an image.
pub(crate) type Plane = ImageBuffer<Luma<f32>, Vec<f32>>;

/// An output size: one number (meaning depends on the op) or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Edge(u32),
    HeightWidth([u32; 2]),
}

impl Size {
    /// `[height, width]`, treating one number as a square.
    fn square_or_exact(self) -> [u32; 2] {
        match self {
            Size::Edge(s) => [s, s],
            Size::HeightWidth(hw) => hw,
        }
    }

    fn validate(self, op: &'static str) -> Result<(), DataError> {
        let [h, w] = self.square_or_exact();
        if h == 0 || w == 0 {
            return Err(DataError::param(op, "size", "must be > 0"));
        }
        Ok(())
    }
}

/// One step of a `[[data.train_transforms]]` / `[[data.eval_transforms]]` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Bilinear (antialiased, as PIL) resize. `size = N` resizes the shorter side to N keeping the
    /// aspect ratio (torchvision); `size = [h, w]` resizes exactly.
    Resize { size: Size },
    /// Crops the centre (one number: a square); a crop larger than the image is zero-padded
    /// (torchvision).
    CenterCrop { size: Size },
    /// torchvision `RandomResizedCrop`: a random area fraction in `scale` and aspect ratio in
    /// `ratio` (log-uniform), 10 tries, then a centre-crop fallback; resized to `size` (one
    /// number: a square).
    RandomResizedCrop {
        size: Size,
        #[serde(default = "default_scale")]
        scale: [f32; 2],
        #[serde(default = "default_ratio")]
        ratio: [f32; 2],
    },
    Hflip {
        #[serde(default = "default_flip_p")]
        p: f64,
    },
    Vflip {
        #[serde(default = "default_flip_p")]
        p: f64,
    },
    /// Rotation by an angle uniform in [-degrees, degrees] (counter-clockwise positive),
    /// nearest-neighbour, corners filled with 0; applied with probability `p`.
    Rotation {
        degrees: f32,
        #[serde(default = "default_always")]
        p: f64,
    },
    /// torchvision `ColorJitter`: factors uniform in [max(0, 1-x), 1+x] for brightness, contrast
    /// and saturation, hue shift uniform in [-hue, hue] (hue <= 0.5), applied in random order.
    /// Saturation and hue leave single-channel images unchanged.
    ColorJitter {
        #[serde(default)]
        brightness: f32,
        #[serde(default)]
        contrast: f32,
        #[serde(default)]
        saturation: f32,
        #[serde(default)]
        hue: f32,
    },
}

fn default_scale() -> [f32; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f32; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
fn default_flip_p() -> f64 {
    0.5
}
fn default_always() -> f64 {
    1.0
}

fn check_probability(op: &'static str, p: f64) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(DataError::param(op, "p", format!("{p} is not in [0, 1]"))) }
}

fn check_range(op: &'static str, field: &'static str, [lo, hi]: [f32; 2]) -> Result<(), DataError> {
    if lo > 0.0 && lo <= hi && hi.is_finite() {
        Ok(())
    } else {
        Err(DataError::param(op, field, format!("[{lo}, {hi}] must be positive and ordered (min <= max)")))
    }
}

fn check_jitter(field: &'static str, value: f32, max: f32) -> Result<(), DataError> {
    if (0.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(DataError::param("color_jitter", field, format!("{value} is not in [0, {max}]")))
    }
}

impl TransformSpec {
    pub fn name(&self) -> &'static str {
        match self {
            TransformSpec::Resize { .. } => "resize",
            TransformSpec::CenterCrop { .. } => "center_crop",
            TransformSpec::RandomResizedCrop { .. } => "random_resized_crop",
            TransformSpec::Hflip { .. } => "hflip",
            TransformSpec::Vflip { .. } => "vflip",
            TransformSpec::Rotation { .. } => "rotation",
            TransformSpec::ColorJitter { .. } => "color_jitter",
        }
    }

    /// Whether the op draws random numbers (its output can differ between epochs).
    pub fn is_random(&self) -> bool {
        !matches!(self, TransformSpec::Resize { .. } | TransformSpec::CenterCrop { .. })
    }

    /// Rejects parameters torchvision would reject, naming the op and field.
    pub fn validate(&self) -> Result<(), DataError> {
        let op = self.name();
        match *self {
            TransformSpec::Resize { size } | TransformSpec::CenterCrop { size } => size.validate(op),
            TransformSpec::RandomResizedCrop { size, scale, ratio } => {
                size.validate(op)?;
                check_range(op, "scale", scale)?;
                if scale[1] > 1.0 {
                    return Err(DataError::param(op, "scale", "max must be <= 1"));
                }
                check_range(op, "ratio", ratio)
            }
            TransformSpec::Hflip { p } | TransformSpec::Vflip { p } => check_probability(op, p),
            TransformSpec::Rotation { degrees, p } => {
                if !(0.0..=180.0).contains(&degrees) {
                    return Err(DataError::param(op, "degrees", format!("{degrees} is not in [0, 180]")));
                }
                check_probability(op, p)
            }
            TransformSpec::ColorJitter { brightness, contrast, saturation, hue } => {
                check_jitter("brightness", brightness, f32::MAX)?;
                check_jitter("contrast", contrast, f32::MAX)?;
                check_jitter("saturation", saturation, f32::MAX)?;
                check_jitter("hue", hue, 0.5)
            }
        }
    }

    /// The op on the image's planes, moving `bbox` (normalized, if the sample has a box) with the
    /// pixels.
    fn apply<R: Rng>(&self, mut planes: Vec<Plane>, bbox: &mut Option<[f32; 4]>, rng: &mut R) -> Vec<Plane> {
        let (w, h) = planes[0].dimensions();
        let mut move_box = |f: &dyn Fn([f32; 4]) -> [f32; 4]| *bbox = bbox.map(f);
        match *self {
            TransformSpec::Resize { size } => {
                let [oh, ow] = match size {
                    Size::Edge(edge) => geometry::shorter_side_to(h, w, edge),
                    Size::HeightWidth(hw) => hw,
                };
                geometry::resize(&planes, oh, ow)
            }
            TransformSpec::CenterCrop { size } => {
                let [ch, cw] = size.square_or_exact();
                let top = (i64::from(h) - i64::from(ch)) / 2;
                let left = (i64::from(w) - i64::from(cw)) / 2;
                move_box(&|b| boxes::crop(b, (h, w), (top, left), (ch, cw)));
                geometry::crop(&planes, top, left, ch, cw)
            }
            TransformSpec::RandomResizedCrop { size, scale, ratio } => {
                let (top, left, ch, cw) = geometry::random_resized_crop_box(h, w, scale, ratio, rng);
                let [oh, ow] = size.square_or_exact();
                move_box(&|b| boxes::crop(b, (h, w), (top.into(), left.into()), (ch, cw)));
                let cropped = geometry::crop(&planes, top.into(), left.into(), ch, cw);
                geometry::resize(&cropped, oh, ow)
            }
            TransformSpec::Hflip { p } | TransformSpec::Vflip { p } => {
                if rng.random_bool(p) {
                    let (flip_box, flip_plane): (fn([f32; 4]) -> [f32; 4], fn(&mut Plane)) = match self {
                        TransformSpec::Hflip { .. } => (boxes::hflip, image::imageops::flip_horizontal_in_place),
                        _ => (boxes::vflip, image::imageops::flip_vertical_in_place),
                    };
                    move_box(&flip_box);
                    planes.iter_mut().for_each(flip_plane);
                }
                planes
            }
            TransformSpec::Rotation { degrees, p } => {
                if rng.random_bool(p) {
                    let angle = rng.random_range(-degrees..=degrees);
                    move_box(&|b| boxes::rotate(b, (h, w), angle));
                    planes.iter().map(|pl| geometry::rotate(pl, angle)).collect()
                } else {
                    planes
                }
            }
            TransformSpec::ColorJitter { brightness, contrast, saturation, hue } => {
                color::jitter(planes, [brightness, contrast, saturation, hue], rng)
            }
        }
    }
}

/// A validated list of transforms, then conversion to the output channel count, then
/// normalization.
#[derive(Debug, Clone)]
pub struct Pipeline {
    specs: Vec<TransformSpec>,
    channels: usize,
    normalization: Normalization,
}

impl Pipeline {
    pub fn new(specs: &[TransformSpec], channels: usize, normalization: Normalization) -> Result<Pipeline, DataError> {
        if channels != 1 && channels != 3 {
            return Err(DataError::config(format!("channels = {channels}: must be 1 or 3")));
        }
        for spec in specs {
            spec.validate()?;
        }
        normalization.check_channels(channels)?;
        Ok(Pipeline { specs: specs.to_vec(), channels, normalization })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn normalization(&self) -> &Normalization {
        &self.normalization
    }

    /// The same transforms ending on values in [0, 1]: what an exported graph that normalizes
    /// inside takes.
    pub fn without_normalization(&self) -> Pipeline {
        Pipeline { normalization: Normalization::identity(self.channels), ..self.clone() }
    }

    /// The transformed image as a flat CHW vector.
    pub fn apply(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<Vec<f32>, DataError> {
        self.apply_with_shape(img, rng).map(|(data, _)| data)
    }

    /// The transformed image and its shape with the random draws seeded by `seed`, for one-off
    /// images outside a loader (prediction on files, the model input shape).
    pub fn apply_seeded(&self, img: &DynamicImage, seed: u64) -> Result<(Vec<f32>, [usize; 3]), DataError> {
        self.apply_with_shape(img, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// The transformed image as a flat CHW vector and its `[C, H, W]` shape.
    pub fn apply_with_shape(&self, img: &DynamicImage, rng: &mut impl Rng) -> Result<(Vec<f32>, [usize; 3]), DataError> {
        self.apply_with_box(img, None, rng).map(|(data, shape, _)| (data, shape))
    }

    /// [`Pipeline::apply_with_shape`], moving the image's normalized box with its pixels: the
    /// box of the transformed image.
    pub fn apply_with_box(
        &self,
        img: &DynamicImage,
        mut bbox: Option<[f32; 4]>,
        rng: &mut impl Rng,
    ) -> Result<(Vec<f32>, [usize; 3], Option<[f32; 4]>), DataError> {
        if img.width() == 0 || img.height() == 0 {
            return Err(DataError::config("cannot transform an empty (0-pixel) image"));
        }
        let mut planes = to_planes(img);
        for spec in &self.specs {
            planes = spec.apply(planes, &mut bbox, rng);
        }
        let planes = convert_channels(planes, self.channels);
        let (w, h) = planes[0].dimensions();
        let mut data = Vec::with_capacity(self.channels * (w * h) as usize);
        for plane in &planes {
            data.extend_from_slice(plane.as_raw());
        }
        self.normalization.apply(&mut data, (w * h) as usize);
        Ok((data, [self.channels, h as usize, w as usize], bbox))
    }
}

/// The train-time and eval-time pipelines of a `[data]` config, sharing one normalization.
#[derive(Debug, Clone)]
pub struct Pipelines {
    pub train: Arc<Pipeline>,
    pub eval: Arc<Pipeline>,
}

/// Builds both pipelines; `train` is the train split, used when `normalize.kind = "dataset"`.
pub fn build_pipelines(cfg: &DataConfig, train: &dyn ImageDataset) -> Result<Pipelines, DataError> {
    let channels = cfg.output_channels(train.info().channels);
    let normalization = Normalization::resolve(&cfg.normalize, channels, train)?;
    Ok(Pipelines {
        train: Pipeline::new(&cfg.train_transforms, channels, normalization.clone())?.into(),
        eval: Pipeline::new(&cfg.eval_transforms, channels, normalization)?.into(),
    })
}

/// Channel planes in [0, 1]: one for grayscale, three for colour (alpha dropped).
pub(crate) fn to_planes(img: &DynamicImage) -> Vec<Plane> {
    // 8-bit images (JPEG, most PNGs) straight from their bytes: image's generic conversion to f32
    // pixels took about a quarter of the HAM10000 loader's time. Same values: v / 255.
    let unit = |v: &u8| f32::from(*v) / 255.0;
    match img {
        DynamicImage::ImageRgb8(rgb) => {
            let (w, h) = rgb.dimensions();
            let plane = |c: usize| Plane::from_raw(w, h, rgb.as_raw().iter().skip(c).step_by(3).map(unit).collect());
            return (0..3).map(|c| plane(c).expect("w x h values")).collect();
        }
        DynamicImage::ImageLuma8(gray) => {
            let (w, h) = gray.dimensions();
            return vec![Plane::from_raw(w, h, gray.as_raw().iter().map(unit).collect()).expect("w x h values")];
        }
        _ => {}
    }
    if img.color().has_color() {
        let rgb = img.to_rgb32f();
        let (w, h) = rgb.dimensions();
        let mut planes = vec![Plane::new(w, h), Plane::new(w, h), Plane::new(w, h)];
        for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            for (plane, value) in planes.iter_mut().zip(px) {
                plane.as_mut()[i] = *value;
            }
        }
        planes
    } else {
        vec![img.to_luma32f()]
    }
}

/// Replicates grayscale to 3 channels, or reduces RGB to luminance (ITU-R 601, as PIL and
/// torchvision).
pub(crate) fn convert_channels(planes: Vec<Plane>, channels: usize) -> Vec<Plane> {
    match (planes.len(), channels) {
        (1, 3) => vec![planes[0].clone(), planes[0].clone(), planes[0].clone()],
        (3, 1) => vec![color::luminance(&planes)],
        _ => planes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    #[test]
    fn eight_bit_images_become_the_planes_of_images_generic_conversion() {
        let rgb = ImageBuffer::from_fn(5, 3, |x, y| Rgb([(x * 50) as u8, (y * 90 + x) as u8, 255 - (x * y) as u8]));
        let gray = ImageBuffer::from_fn(4, 2, |x, y| Luma([(x * 60 + y * 7) as u8]));
        for img in [DynamicImage::ImageRgb8(rgb), DynamicImage::ImageLuma8(gray)] {
            // The generic path: image's own f32 conversion, split into planes.
            let generic: Vec<Plane> = match img.color().has_color() {
                true => {
                    let converted = img.to_rgb32f();
                    let (w, h) = converted.dimensions();
                    (0..3).map(|c| Plane::from_fn(w, h, |x, y| Luma([converted.get_pixel(x, y)[c]]))).collect()
                }
                false => vec![img.to_luma32f()],
            };
            assert_eq!(to_planes(&img), generic, "{:?}", img.color());
        }
    }
}
