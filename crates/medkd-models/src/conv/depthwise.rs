//! The backward pass of a depthwise convolution on zero-padded copies of the channel planes, so
//! that a kernel tap reads and writes whole runs of values with no bounds to work out: MobileNetV2
//! at 64 px has planes of 2x2 to 32x32, where per-row bookkeeping cost more than the arithmetic.
//! At stride 1 a tap is one flat run over a whole padded plane (for the weight gradient, over all
//! samples' planes of a channel at once): output-gradient rows are spread to the padded width with
//! zeros between them, so the positions that fall outside the output add nothing. burn 0.22.1
//! computes this weight gradient as one convolution per channel, 960 of them in MobileNetV2's
//! widest layers.

use super::Geometry;
use crate::flex::{lane_sum, written_in_full};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Input and weight gradients (each only when asked for) of a depthwise convolution.
pub(super) fn backward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let padded = Padded::new(g);
    let (taps, in_size, out_size) = (g.kernel * g.kernel, g.in_plane(), g.out_plane());
    let dx = want_dx.then(|| {
        // SAFETY: each plane of dx is written in full by `crop`.
        unsafe {
            written_in_full(g.batch * g.channels * in_size, |dx| {
                dx.par_chunks_mut(in_size).enumerate().for_each_init(
                    || (vec![0.0; padded.len()], vec![0.0; padded.len()]),
                    |(scratch, spread), (index, dx)| {
                        scratch.fill(0.0);
                        let (taps, dy) = (&weight[(index % g.channels) * taps..][..taps], &dy[index * out_size..][..out_size]);
                        if g.stride == 1 {
                            padded.spread(dy, spread);
                            for (tap, offset) in padded.offsets() {
                                axpy(taps[tap], spread, &mut scratch[offset..], 1);
                            }
                        } else {
                            padded.for_each_row(dy, |tap, dy_row, offset| axpy(taps[tap], dy_row, &mut scratch[offset..], g.stride));
                        }
                        padded.crop(scratch, dx);
                    },
                )
            })
        }
    });
    let dw = want_dw.then(|| {
        let mut dw = vec![0.0; g.channels * taps];
        let planes = if g.stride == 1 { g.batch } else { 1 };
        dw.par_chunks_mut(taps).enumerate().for_each_init(
            // Padding and the gaps between spread rows are never written, so they stay zero from one
            // channel to the next.
            || (vec![0.0; planes * padded.len()], vec![0.0; planes * padded.len()]),
            |(xs, spread), (channel, dw)| {
                let planes = (0..g.batch).map(|sample| sample * g.channels + channel);
                if g.stride == 1 {
                    for (index, (xs, spread)) in planes.zip(xs.chunks_exact_mut(padded.len()).zip(spread.chunks_exact_mut(padded.len()))) {
                        padded.fill(&x[index * in_size..][..in_size], xs);
                        padded.spread(&dy[index * out_size..][..out_size], spread);
                    }
                    for (tap, offset) in padded.offsets() {
                        dw[tap] += dot(&xs[offset..], spread, 1);
                    }
                } else {
                    for index in planes {
                        padded.fill(&x[index * in_size..][..in_size], xs);
                        padded.for_each_row(&dy[index * out_size..][..out_size], |tap, dy_row, offset| {
                            dw[tap] += dot(&xs[offset..], dy_row, g.stride);
                        });
                    }
                }
            },
        );
        dw
    });
    (dx, dw)
}

/// One input plane with `padding` zeros on every side.
struct Padded {
    g: Geometry,
    width: usize,
}

impl Padded {
    fn new(g: &Geometry) -> Self {
        Self { g: *g, width: g.width + 2 * g.padding }
    }
    fn len(&self) -> usize {
        (self.g.height + 2 * self.g.padding) * self.width
    }
    /// Where input pixel (`row`, 0) of the plane lies in the padded plane.
    fn interior(&self, row: usize) -> usize {
        (row + self.g.padding) * self.width + self.g.padding
    }
    /// Copies a plane into the interior of `padded`.
    fn fill(&self, plane: &[f32], padded: &mut [f32]) {
        for (row, values) in plane.chunks_exact(self.g.width).enumerate() {
            padded[self.interior(row)..][..self.g.width].copy_from_slice(values);
        }
    }
    /// Copies the interior of `padded` into a plane.
    fn crop(&self, padded: &[f32], plane: &mut [MaybeUninit<f32>]) {
        for (row, values) in plane.chunks_exact_mut(self.g.width).enumerate() {
            values.write_copy_of_slice(&padded[self.interior(row)..][..self.g.width]);
        }
    }
    /// Copies the rows of a stride-1 output plane to the start of padded-width rows, leaving the
    /// rest of `spread` as it is (zero): output (oh, ow) goes to oh·width + ow, so that the input
    /// under it for tap (kh, kw) is that position plus kh·width + kw.
    fn spread(&self, out_plane: &[f32], spread: &mut [f32]) {
        for (row, values) in out_plane.chunks_exact(self.g.out_width).enumerate() {
            spread[row * self.width..][..self.g.out_width].copy_from_slice(values);
        }
    }
    /// (tap, kh·width + kw) for every kernel tap.
    fn offsets(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let k = self.g.kernel;
        (0..k * k).map(move |tap| (tap, tap / k * self.width + tap % k))
    }
    /// Calls `f(tap, output row, offset)` for every output row of `out_plane` and kernel tap,
    /// where `offset` is the padded position under the row's first output for that tap; the
    /// row's later outputs lie `stride` apart from there.
    fn for_each_row(&self, out_plane: &[f32], mut f: impl FnMut(usize, &[f32], usize)) {
        for (oh, row) in out_plane.chunks_exact(self.g.out_width).enumerate() {
            for (tap, offset) in self.offsets() {
                f(tap, row, oh * self.g.stride * self.width + offset);
            }
        }
    }
}

/// `dst[i * stride] += a * src[i]`, for as many `i` as both hold.
fn axpy(a: f32, src: &[f32], dst: &mut [f32], stride: usize) {
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += a * s);
    } else {
        dst.iter_mut().step_by(stride).zip(src).for_each(|(d, s)| *d += a * s);
    }
}

/// `Σ a[i * stride] · b[i]`, over as many `i` as both hold; at stride 1 in SIMD lanes.
fn dot(a: &[f32], b: &[f32], stride: usize) -> f32 {
    match stride {
        1 => lane_sum(a, b, |a, b| a * b),
        _ => a.iter().step_by(stride).zip(b).map(|(a, b)| a * b).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy_follow_their_definitions_at_both_strides() {
        let a: Vec<f32> = (0..40).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32).sin()).collect();
        for stride in [1, 2] {
            let expected: f64 = (0..b.len()).map(|i| a[i * stride] as f64 * b[i] as f64).sum();
            assert!((dot(&a, &b, stride) as f64 - expected).abs() < 1e-4, "stride {stride}");
            let mut dst = a.clone();
            axpy(2.0, &b, &mut dst, stride);
            for (i, value) in dst.iter().enumerate() {
                let added = if i % stride == 0 && i / stride < b.len() { 2.0 * b[i / stride] } else { 0.0 };
                assert_eq!(*value, a[i] + added, "stride {stride}, index {i}");
            }
        }
    }
}
