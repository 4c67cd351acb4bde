//! One bounding box per image, checked and normalized to [0, 1] so that it stays valid when its
//! image is resized.

use crate::config::BoxUnits;

/// The coordinate names, in `box_columns` order.
pub(crate) const COORDS: [&str; 4] = ["x0", "y0", "x1", "y1"];

/// Why a box is invalid: the coordinate at fault (an index into [`COORDS`]) and what is wrong.
pub(crate) struct BoxError {
    pub coord: usize,
    pub message: String,
}

/// `[x0, y0, x1, y1]` (x1/y1 exclusive) as fractions of the image's `(width, height)`. Pixel boxes
/// must lie within the image and normalized ones within [0, 1], with `x1 > x0` and `y1 > y0`.
pub(crate) fn normalize_box(values: [f64; 4], units: BoxUnits, (width, height): (u32, u32)) -> Result<[f32; 4], BoxError> {
    let limits = match units {
        BoxUnits::Pixels => [f64::from(width), f64::from(height)],
        BoxUnits::Normalized => [1.0, 1.0],
    };
    for (coord, &v) in values.iter().enumerate() {
        let limit = limits[coord % 2];
        if !(0.0..=limit).contains(&v) {
            let message = match units {
                BoxUnits::Pixels => {
                    let side = if coord % 2 == 0 { "width" } else { "height" };
                    format!("{} = {v} is outside the image, whose {side} is {limit} px (box edges lie in [0, {limit}])", COORDS[coord])
                }
                BoxUnits::Normalized => format!("{} = {v} is outside [0, 1] (box_units = \"normalized\")", COORDS[coord]),
            };
            return Err(BoxError { coord, message });
        }
    }
    for (lo, hi) in [(0, 2), (1, 3)] {
        if values[hi] <= values[lo] {
            let message = format!("{} = {} must be greater than {} = {}", COORDS[hi], values[hi], COORDS[lo], values[lo]);
            return Err(BoxError { coord: hi, message });
        }
    }
    // Divided in f64, then rounded once to f32.
    Ok(std::array::from_fn(|coord| (values[coord] / limits[coord % 2]) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_boxes_divide_by_width_and_height() {
        let b = normalize_box([10.0, 20.0, 100.0, 50.0], BoxUnits::Pixels, (200, 100)).ok().unwrap();
        assert_eq!(b, [0.05, 0.2, 0.5, 0.5]);
        // The exclusive right/bottom edge may equal the size.
        assert!(normalize_box([0.0, 0.0, 200.0, 100.0], BoxUnits::Pixels, (200, 100)).is_ok());
    }

    #[test]
    fn bad_boxes_name_the_coordinate() {
        let coord = |v, units| normalize_box(v, units, (200, 100)).err().unwrap().coord;
        assert_eq!(coord([10.0, 20.0, 10.0, 50.0], BoxUnits::Pixels), 2);
        assert_eq!(coord([10.0, 60.0, 20.0, 50.0], BoxUnits::Pixels), 3);
        assert_eq!(coord([10.0, 20.0, 30.0, 101.0], BoxUnits::Pixels), 3);
        assert_eq!(coord([-1.0, 20.0, 30.0, 50.0], BoxUnits::Pixels), 0);
        assert_eq!(coord([0.1, 0.2, 1.5, 0.5], BoxUnits::Normalized), 2);
        assert_eq!(coord([0.1, f64::NAN, 0.5, 0.5], BoxUnits::Normalized), 1);
    }
}
