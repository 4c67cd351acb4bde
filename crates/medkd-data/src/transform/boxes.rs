//! A box moved with its image: each geometric op maps a normalized `[x0, y0, x1, y1]` box as it
//! maps the pixels (torchvision.transforms.v2 semantics for bounding boxes). Boxes stay fractions
//! of the current image, so resizes leave them unchanged.

/// The box after cropping the `h`x`w` window at (`top`, `left`) from a `height`x`width` image,
/// clipped to the window. A box the window cuts off entirely becomes a zero-area box on the
/// window's edge (torchvision clamps the same way; its `SanitizeBoundingBoxes` would drop it).
pub(super) fn crop(b: [f32; 4], (height, width): (u32, u32), (top, left): (i64, i64), (h, w): (u32, u32)) -> [f32; 4] {
    let along = |v: f32, size: u32, start: i64, extent: u32| {
        ((f64::from(v) * f64::from(size) - start as f64) / f64::from(extent)).clamp(0.0, 1.0) as f32
    };
    [along(b[0], width, left, w), along(b[1], height, top, h), along(b[2], width, left, w), along(b[3], height, top, h)]
}

pub(super) fn hflip(b: [f32; 4]) -> [f32; 4] {
    [1.0 - b[2], b[1], 1.0 - b[0], b[3]]
}

pub(super) fn vflip(b: [f32; 4]) -> [f32; 4] {
    [b[0], 1.0 - b[3], b[2], 1.0 - b[1]]
}

/// The smallest upright box holding the box's four corners rotated by `degrees` counter-clockwise
/// about the image centre (as [`super::geometry::rotate`] moves pixels), clipped to the image.
/// It holds the rotated lesion but is looser than the lesion's own tight box, as in torchvision.
pub(super) fn rotate(b: [f32; 4], (height, width): (u32, u32), degrees: f32) -> [f32; 4] {
    let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
    let (w, h) = (f64::from(width), f64::from(height));
    let (cx, cy) = (w / 2.0, h / 2.0);
    let [x0, y0, x1, y1] = b.map(f64::from);
    let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| {
        // Pixel coordinates, y pointing up about the centre, rotated, then back.
        let (u, v) = (x * w - cx, cy - y * h);
        let (ru, rv) = (cos * u - sin * v, sin * u + cos * v);
        ((ru + cx) / w, (cy - rv) / h)
    });
    let fold = |pick: fn(&(f64, f64)) -> f64, min: bool| {
        let values = corners.iter().map(pick);
        let v = if min { values.fold(f64::INFINITY, f64::min) } else { values.fold(f64::NEG_INFINITY, f64::max) };
        v.clamp(0.0, 1.0) as f32
    };
    [fold(|c| c.0, true), fold(|c| c.1, true), fold(|c| c.0, false), fold(|c| c.1, false)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_mirror_the_coordinates() {
        assert_eq!(hflip([0.1, 0.2, 0.4, 0.9]), [0.6, 0.2, 0.9, 0.9]);
        assert_eq!(vflip([0.1, 0.2, 0.4, 0.9]), [0.1, 0.100000024, 0.4, 0.8]);
    }

    #[test]
    fn a_crop_re_expresses_and_clips_the_box() {
        // A 100x200 image (h x w), window of 50x100 at (10, 20).
        let b = crop([0.2, 0.3, 0.5, 0.9], (100, 200), (10, 20), (50, 100));
        let expected = [(40.0 - 20.0) / 100.0, (30.0 - 10.0) / 50.0, (100.0 - 20.0) / 100.0, 1.0];
        for (got, want) in b.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
        // Entirely outside the window: zero area on its edge.
        assert_eq!(crop([0.9, 0.9, 1.0, 1.0], (100, 200), (0, 0), (50, 100)), [1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn a_quarter_turn_moves_the_box_counter_clockwise() {
        // Square image: the right half becomes the top half.
        let b = rotate([0.5, 0.0, 1.0, 1.0], (10, 10), 90.0);
        for (got, want) in b.iter().zip([0.0, 0.0, 1.0, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
    }
}
