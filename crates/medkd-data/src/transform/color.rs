//! torchvision's `ColorJitter`, written by hand because image's brighten/contrast/huerotate use
//! different (additive, degree-based) definitions.

use rand::Rng;
use rand::seq::SliceRandom;

use super::Plane;

/// ITU-R 601 luma of three RGB planes.
pub(super) fn luminance(rgb: &[Plane]) -> Plane {
    let (w, h) = rgb[0].dimensions();
    let mut out = Plane::new(w, h);
    let channels = rgb[0].iter().zip(rgb[1].iter()).zip(rgb[2].iter());
    for (px, ((r, g), b)) in out.iter_mut().zip(channels) {
        *px = 0.299 * r + 0.587 * g + 0.114 * b;
    }
    out
}

/// `factor * img + (1 - factor) * other`, clamped to [0, 1] (torchvision `_blend`); `other`
/// gives one value per pixel (a slice iterator or a repeated constant, both of which the
/// compiler vectorizes, unlike indexing).
fn blend(plane: &mut Plane, other: impl Iterator<Item = f32>, factor: f32) {
    for (px, other) in plane.iter_mut().zip(other) {
        *px = (factor * *px + (1.0 - factor) * other).clamp(0.0, 1.0);
    }
}

fn gray(planes: &[Plane]) -> Plane {
    if planes.len() == 3 { luminance(planes) } else { planes[0].clone() }
}

/// `amounts` = [brightness, contrast, saturation, hue]; a zero amount is skipped, as in
/// torchvision. The four adjustments run in a random order.
pub(super) fn jitter<R: Rng>(mut planes: Vec<Plane>, amounts: [f32; 4], rng: &mut R) -> Vec<Plane> {
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);
    let factors: [Option<f32>; 4] = std::array::from_fn(|i| {
        let a = amounts[i];
        (a > 0.0).then(|| match i {
            3 => rng.random_range(-a..=a),
            _ => rng.random_range((1.0 - a).max(0.0)..=1.0 + a),
        })
    });
    for op in order {
        let Some(f) = factors[op] else { continue };
        match op {
            0 => planes.iter_mut().for_each(|p| blend(p, std::iter::repeat(0.0), f)),
            1 => {
                let g = gray(&planes);
                let mean = g.as_raw().iter().sum::<f32>() / g.len() as f32;
                planes.iter_mut().for_each(|p| blend(p, std::iter::repeat(mean), f));
            }
            // Saturation and hue are identities on grayscale, as in torchvision.
            2 if planes.len() == 3 => {
                let g = gray(&planes);
                planes.iter_mut().for_each(|p| blend(p, g.iter().copied(), f));
            }
            3 if planes.len() == 3 => shift_hue(&mut planes, f),
            _ => {}
        }
    }
    planes
}

/// Rotates hue by `shift` turns (in [-0.5, 0.5]) through HSV.
fn shift_hue(rgb: &mut [Plane], shift: f32) {
    let [r, g, b] = rgb else { return };
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (h, s, v) = rgb_to_hsv(*r, *g, *b);
        let (nr, ng, nb) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        (*r, *g, *b) = (nr, ng, nb);
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta == 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let sector = h6.floor();
    let frac = h6 - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * frac);
    let t = v * (1.0 - s * (1.0 - frac));
    match sector as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}
