//! Geometric ops on channel planes. Random parameters are drawn once per image, then applied to
//! every plane alike.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::Rng;

use super::Plane;

/// `[height, width]` with the shorter side scaled to `edge` and the aspect ratio kept (the longer
/// side truncated, as torchvision does).
pub(super) fn shorter_side_to(h: u32, w: u32, edge: u32) -> [u32; 2] {
    let scale_long = |long: u32, short: u32| ((u64::from(edge) * u64::from(long)) / u64::from(short)).max(1) as u32;
    if h <= w { [edge, scale_long(w, h)] } else { [scale_long(h, w), edge] }
}

/// Bilinear resize with the support widened when shrinking: Pillow's antialiased bilinear filter,
/// which torchvision's `Resize` uses (tests/resize_golden.rs checks against Pillow). Through
/// fast_image_resize, whose SIMD convolution follows Pillow's: image's `resize` took about half of
/// the HAM10000 loader's time (BENCHMARKS.md, issue #5).
pub(super) fn resize(planes: &[Plane], h: u32, w: u32) -> Vec<Plane> {
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    let mut resizer = Resizer::new();
    planes
        .iter()
        .map(|p| {
            if p.dimensions() == (w, h) {
                return p.clone();
            }
            let mut out = vec![0.0f32; w as usize * h as usize];
            let src = ImageRef::new(p.width(), p.height(), bytemuck::cast_slice(p.as_raw()), PixelType::F32)
                .expect("a plane holds width x height f32 values");
            let mut dst =
                Image::from_slice_u8(w, h, bytemuck::cast_slice_mut(&mut out), PixelType::F32).expect("the output holds w x h f32 values");
            resizer.resize(&src, &mut dst, &options).expect("both images are F32");
            Plane::from_raw(w, h, out).expect("the output holds w x h values")
        })
        .collect()
}

/// The `h`x`w` window at (`top`, `left`); parts outside the image are 0.
// Written by hand because image's crop cannot pad, and torchvision's center_crop pads.
pub(super) fn crop(planes: &[Plane], top: i64, left: i64, h: u32, w: u32) -> Vec<Plane> {
    planes
        .iter()
        .map(|p| {
            let (pw, ph) = (i64::from(p.width()), i64::from(p.height()));
            let mut out = Plane::new(w, h);
            // The columns of the window that fall inside the image, copied row by row.
            let (x0, x1) = (left.max(0), (left + i64::from(w)).min(pw));
            if x0 < x1 {
                let len = (x1 - x0) as usize;
                let dst_x = (x0 - left) as usize;
                for y in 0..i64::from(h) {
                    let sy = top + y;
                    if (0..ph).contains(&sy) {
                        let src = (sy * pw + x0) as usize;
                        let dst = y as usize * w as usize + dst_x;
                        out.as_mut()[dst..dst + len].copy_from_slice(&p.as_raw()[src..src + len]);
                    }
                }
            }
            out
        })
        .collect()
}

/// torchvision `RandomResizedCrop.get_params`: `(top, left, height, width)` of the crop.
pub(super) fn random_resized_crop_box<R: Rng>(
    height: u32,
    width: u32,
    scale: [f32; 2],
    ratio: [f32; 2],
    rng: &mut R,
) -> (u32, u32, u32, u32) {
    let area = f64::from(height) * f64::from(width);
    let log_ratio = [f64::from(ratio[0]).ln(), f64::from(ratio[1]).ln()];
    for _ in 0..10 {
        let target_area = area * rng.random_range(f64::from(scale[0])..=f64::from(scale[1]));
        let aspect = rng.random_range(log_ratio[0]..=log_ratio[1]).exp();
        let w = (target_area * aspect).sqrt().round();
        let h = (target_area / aspect).sqrt().round();
        if w > 0.0 && h > 0.0 && w <= f64::from(width) && h <= f64::from(height) {
            let (w, h) = (w as u32, h as u32);
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: the largest centred crop whose aspect ratio is within `ratio`.
    let in_ratio = f64::from(width) / f64::from(height);
    let (min_ratio, max_ratio) = (f64::from(ratio[0]), f64::from(ratio[1]));
    let (w, h) = if in_ratio < min_ratio {
        (width, ((f64::from(width) / min_ratio).round() as u32).clamp(1, height))
    } else if in_ratio > max_ratio {
        (((f64::from(height) * max_ratio).round() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// Rotation about the centre by `degrees` counter-clockwise, nearest neighbour, fill 0.
// Written by hand because image rotates only by multiples of 90 degrees.
pub(super) fn rotate(plane: &Plane, degrees: f32) -> Plane {
    let (w, h) = plane.dimensions();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    Plane::from_fn(w, h, |x, y| {
        // Inverse-map the output pixel centre into the source, with y pointing up.
        let u = x as f32 + 0.5 - cx;
        let v = cy - (y as f32 + 0.5);
        let su = cos * u + sin * v;
        let sv = -sin * u + cos * v;
        let sx = (su + cx).floor();
        let sy = (cy - sv).floor();
        if sx >= 0.0 && sy >= 0.0 && sx < w as f32 && sy < h as f32 { *plane.get_pixel(sx as u32, sy as u32) } else { image::Luma([0.0]) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_90_is_counter_clockwise() {
        // A bright pixel right of centre ends up above centre.
        let mut plane = Plane::new(5, 5);
        plane.put_pixel(4, 2, image::Luma([1.0]));
        let out = rotate(&plane, 90.0);
        assert_eq!(out.get_pixel(2, 0)[0], 1.0);
        assert_eq!(out.as_raw().iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn shorter_side_keeps_aspect() {
        assert_eq!(shorter_side_to(20, 40, 10), [10, 20]);
        assert_eq!(shorter_side_to(45, 20, 10), [22, 10]);
    }
}
