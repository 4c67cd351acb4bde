//! A box from a class activation map (weakly supervised localization, Zhou et al. 2016): the
//! pixels at or above a fraction of the map's maximum, their largest 4-connected component, and
//! that component's tight box. Checked against scipy.ndimage.label
//! (`tools/golden/cam_box_golden.py`).
//!
//! The flood fill is written here: it is a few lines over one small map, where imageproc's
//! `connected_components` would bring its font and linear-algebra dependencies.

/// The box, normalized `[x0, y0, x1, y1]` with exclusive right and bottom edges, of the largest
/// 4-connected region of `map` (`height x width`, row-major) whose values are at least
/// `threshold x max(map)`. Ties between regions go to the first in row-major order. A map with
/// no positive value (the class left no evidence) gives the whole image.
pub fn cam_box(map: &[f32], height: usize, width: usize, threshold: f64) -> [f32; 4] {
    assert_eq!(map.len(), height * width, "a height x width map");
    let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_nan() || max <= 0.0 {
        return [0.0, 0.0, 1.0, 1.0];
    }
    let cut = (threshold * f64::from(max)) as f32;
    let mut seen = vec![false; map.len()];
    // (size, [min x, min y, max x, max y]) of the largest region so far.
    let mut best: Option<(usize, [usize; 4])> = None;
    let mut stack = Vec::new();
    for start in 0..map.len() {
        if seen[start] || map[start] < cut {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut size, mut bounds) = (0, [usize::MAX, usize::MAX, 0, 0]);
        while let Some(i) = stack.pop() {
            let (y, x) = (i / width, i % width);
            size += 1;
            bounds = [bounds[0].min(x), bounds[1].min(y), bounds[2].max(x), bounds[3].max(y)];
            let neighbours =
                [(y > 0).then(|| i - width), (y + 1 < height).then(|| i + width), (x > 0).then(|| i - 1), (x + 1 < width).then(|| i + 1)];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && map[j] >= cut {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if best.is_none_or(|(largest, _)| size > largest) {
            best = Some((size, bounds));
        }
    }
    let (_, [x0, y0, x1, y1]) = best.expect("the maximum is at or above the cut");
    let (w, h) = (width as f32, height as f32);
    [x0 as f32 / w, y0 as f32 / h, (x1 + 1) as f32 / w, (y1 + 1) as f32 / h]
}
