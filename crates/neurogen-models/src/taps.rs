//! The three taps of a dilated kernel-3 convolution, `[x[t − d], x[t], x[t + d]]`, as one op.
//!
//! The one decision here, as in [`activation`](crate::activation): **same numbers, fewer
//! passes.** Composed from burn's ops ([`shift`] twice, then a concatenation) the taps are
//! seven ops forward: each shift narrows the input (a strided view that the concatenation first
//! copies into a buffer of its own, burn-flex's `copy_2d_tiled`), concatenates it with zeros,
//! and the outer concatenation copies everything once more. Their backward pass narrows the
//! gradient three ways, copies two of the views into zero-filled buffers (`slice_assign`) and
//! adds the three. Measured with `perf` on the diffusion workload (whose denoiser takes the
//! taps of every block), that was 11 % of the step in `copy_2d_tiled` alone. Here the forward is
//! one pass that writes each output row from its three source rows, and the backward one pass
//! that sums each input row's three gradients.
//!
//! **Bit-identical to the composition** on every backend, forward and backward, when the
//! input has no other consumer (as in the diffusion denoiser): the forward only moves values,
//! and the backward adds the three gradients in the order burn's autodiff adds them in the
//! composition — the centre tap's, then the advanced tap's, then the delayed tap's, a zero
//! where a tap falls outside the window (burn runs backward steps deepest first, and depth
//! ties in the order its graph traversal found them). Dilations of 0 or of at least the window
//! length take the composition itself, where the graph has another shape. Other backends than
//! flex take the composition through the trait's default bodies, with the fused backward.
//!
//! [`shift`]: crate::conv::shift

// burn marks ndarray deprecated; neurogen still offers it as a backend, and the extension macro
// names every backend it routes to.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Slice, TensorMetadata};
use burn::tensor::Tensor;

use crate::conv::shift;

/// `[x[t − d], x[t], x[t + d]]` side by side on the last axis, zeros outside the window: the
/// input of a kernel-3 convolution at dilation `d` with "same" padding, as one product.
///
/// # Shapes
/// - `x`: `[batch, time, c]` → `[batch, time, 3c]`
pub fn taps3(x: Tensor<3>, d: usize) -> Tensor<3> {
    let t = x.dims()[1];
    if d == 0 || d >= t {
        return composed_taps3(x, d);
    }
    Tensor::from_dispatch(<Dispatch as Taps>::taps3(x.into_dispatch(), d))
}

/// The composition from burn's ops that [`taps3`] computes.
///
/// # Shapes
/// - `x`: `[batch, time, c]` → `[batch, time, 3c]`
pub fn composed_taps3(x: Tensor<3>, d: usize) -> Tensor<3> {
    let d = d as isize;
    Tensor::cat(vec![shift(x.clone(), d), x.clone(), shift(x, -d)], 2)
}

/// The taps as backend ops, for dilations `1 ≤ d < time`. The default bodies compose burn's
/// ops as the autodiff composition computes them; flex overrides them.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait Taps: Backend {
    /// `[batch, time, c]` → `[batch, time, 3c]`.
    fn taps3(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
        composed::taps3::<Self>(x, d)
    }
    /// `[batch, time, 3c]` → `[batch, time, c]`: each input row's three gradients, summed.
    fn taps3_backward(grad: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
        composed::taps3_backward::<Self>(grad, d)
    }
}

mod composed {
    use super::*;

    fn dims<B: Backend>(x: &FloatTensor<B>) -> [usize; 3] {
        let s = x.shape();
        [s[0], s[1], s[2]]
    }

    fn zeros<B: Backend>(like: &FloatTensor<B>, shape: [usize; 3]) -> FloatTensor<B> {
        B::float_zeros(shape.into(), &like.device(), like.dtype().into())
    }

    fn part<B: Backend>(
        x: FloatTensor<B>,
        time: (usize, usize),
        ch: (usize, usize),
    ) -> FloatTensor<B> {
        let b = x.shape()[0];
        B::float_slice(
            x,
            &[
                Slice::from(0..b),
                Slice::from(time.0..time.1),
                Slice::from(ch.0..ch.1),
            ],
        )
    }

    pub(super) fn taps3<B: Backend>(x: FloatTensor<B>, d: usize) -> FloatTensor<B> {
        let [b, t, c] = dims::<B>(&x);
        let pad = zeros::<B>(&x, [b, d, c]);
        let delayed = B::float_cat(
            vec![pad.clone(), part::<B>(x.clone(), (0, t - d), (0, c))],
            1,
        );
        let advanced = B::float_cat(vec![part::<B>(x.clone(), (d, t), (0, c)), pad], 1);
        B::float_cat(vec![delayed, x, advanced], 2)
    }

    /// `(centre + advanced) + delayed`, each tap's gradient moved back to the input row it read.
    pub(super) fn taps3_backward<B: Backend>(grad: FloatTensor<B>, d: usize) -> FloatTensor<B> {
        let [b, t, c3] = dims::<B>(&grad);
        let c = c3 / 3;
        // Each tap's gradient, placed where its input row lies: zeros, then the rows.
        let placed = |rows: FloatTensor<B>, at: (usize, usize)| {
            let slices = [
                Slice::from(0..b),
                Slice::from(at.0..at.1),
                Slice::from(0..c),
            ];
            B::float_slice_assign(zeros::<B>(&grad, [b, t, c]), &slices, rows)
        };
        let centre = part::<B>(grad.clone(), (0, t), (c, 2 * c));
        // The advanced tap read x[t + d] at row t: its gradient lands at rows d..t.
        let advanced = placed(part::<B>(grad.clone(), (0, t - d), (2 * c, 3 * c)), (d, t));
        // The delayed tap read x[t − d] at row t: its gradient lands at rows 0..t − d.
        let delayed = placed(part::<B>(grad.clone(), (d, t), (0, c)), (0, t - d));
        B::float_add(B::float_add(centre, advanced), delayed)
    }
}

#[cfg(feature = "ndarray")]
impl Taps for burn::backend::NdArray {}
#[cfg(feature = "wgpu")]
impl Taps for burn::backend::Cube {}

/// The flex kernels (built with the `flex` feature).
#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::{DType, TensorData};
    use rayon::prelude::*;

    use crate::activation::flex::{read, PARALLEL_MIN};

    fn dims(t: &FlexTensor) -> [usize; 3] {
        let s = t.layout().shape();
        [s[0], s[1], s[2]]
    }

    /// `f(window, out)` for each batch element's window of `x` (`per_in` values) and of the
    /// output (`per_out`), over the pool when the output is large.
    fn per_window(
        x: &[f32],
        per_in: usize,
        out: &mut [f32],
        per_out: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync,
    ) {
        if out.len() < PARALLEL_MIN {
            for (o, x) in out.chunks_mut(per_out).zip(x.chunks(per_in)) {
                f(x, o);
            }
        } else {
            out.par_chunks_mut(per_out)
                .zip(x.par_chunks(per_in))
                .for_each(|(o, x)| f(x, o));
        }
    }

    impl Taps for Flex {
        fn taps3(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
            if x.dtype() != DType::F32 {
                return composed::taps3::<Self>(x, d);
            }
            let [b, t, c] = dims(&x);
            let mut out = vec![0f32; b * t * 3 * c];
            read(&x, |x| {
                per_window(x, t * c, &mut out, t * 3 * c, |x, o| {
                    for (s, row) in o.chunks_mut(3 * c).enumerate() {
                        let (delayed, rest) = row.split_at_mut(c);
                        let (centre, advanced) = rest.split_at_mut(c);
                        if s >= d {
                            delayed.copy_from_slice(&x[(s - d) * c..(s - d + 1) * c]);
                        }
                        centre.copy_from_slice(&x[s * c..(s + 1) * c]);
                        if s + d < t {
                            advanced.copy_from_slice(&x[(s + d) * c..(s + d + 1) * c]);
                        }
                    }
                })
            });
            FlexTensor::from_data(TensorData::new(out, [b, t, 3 * c]))
        }

        fn taps3_backward(grad: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
            if grad.dtype() != DType::F32 {
                return composed::taps3_backward::<Self>(grad, d);
            }
            let [b, t, c3] = dims(&grad);
            let c = c3 / 3;
            let mut out = vec![0f32; b * t * c];
            read(&grad, |g| {
                per_window(g, t * c3, &mut out, t * c, |g, o| {
                    for (s, row) in o.chunks_mut(c).enumerate() {
                        let centre = &g[s * c3 + c..s * c3 + 2 * c];
                        // Rows with no gradient from a tap add a zero, as the composition does.
                        let advanced =
                            (s >= d).then(|| &g[(s - d) * c3 + 2 * c..(s - d) * c3 + c3]);
                        let delayed = (s + d < t).then(|| &g[(s + d) * c3..(s + d) * c3 + c]);
                        for (k, o) in row.iter_mut().enumerate() {
                            let a = advanced.map_or(0.0, |a| a[k]);
                            let l = delayed.map_or(0.0, |l| l[k]);
                            *o = (centre[k] + a) + l;
                        }
                    }
                })
            });
            FlexTensor::from_data(TensorData::new(out, [b, t, c]))
        }
    }
}

#[derive(Debug)]
struct Taps3Backward {
    d: usize,
}

impl<B: Backend + Taps> Backward<B, 1> for Taps3Backward {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _c: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(parent)] = ops.parents {
            grads.register::<B>(parent.id, B::taps3_backward(grad, self.d));
        }
    }
}

impl<B: Backend + Taps, C: CheckpointStrategy> Taps for Autodiff<B, C> {
    fn taps3(x: FloatTensor<Self>, d: usize) -> FloatTensor<Self> {
        let prep = Taps3Backward { d }.prepare::<C>([x.node()]).compute_bound();
        prep.stateless(B::taps3(x.into_primitive(), d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn bits(t: Tensor<3>) -> Vec<u32> {
        let v: Vec<f32> = t.into_data().try_to_vec().unwrap();
        v.into_iter().map(f32::to_bits).collect()
    }

    /// Deterministic values with zeros of both signs among them.
    fn values(shape: [usize; 3], phase: f32, device: &Device) -> Tensor<3> {
        let n = shape.iter().product::<usize>();
        let mut v: Vec<f32> = (0..n)
            .map(|i| 3.0 * ((i as f32) * 0.618_034 + phase).sin() * ((i as f32) * 0.1).cos())
            .collect();
        v[0] = -0.0;
        v[n / 2] = 0.0;
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Forward values and input gradients are bit-identical to the composition: below and above
    /// the parallel size, every dilation from 1 to past the window, for a contiguous input and
    /// a time-major view of a channel-major one (the denoiser's input layer).
    fn check_bits(device: Device) {
        // Serial; serial backward and parallel forward; both parallel.
        for (b, t, c) in [(2, 5, 3), (3, 17, 4), (8, 64, 24), (16, 96, 32)] {
            let w = values([b, t, 3 * c], 0.5, &device);
            let dilations = (0..t + 2).filter(|&d| t < 20 || [0, 1, 2, 7, t - 1, t].contains(&d));
            for d in dilations {
                let x = values([b, t, c], 0.0, &device);
                assert_eq!(
                    bits(taps3(x.clone(), d)),
                    bits(composed_taps3(x.clone(), d)),
                    "{b}×{t}×{c} d={d}"
                );
                let view = values([b, c, t], 1.0, &device).swap_dims(1, 2);
                assert_eq!(
                    bits(taps3(view.clone(), d)),
                    bits(composed_taps3(view, d)),
                    "view d={d}"
                );
                if !device.is_autodiff() {
                    continue;
                }
                // Through a product first, as in the denoiser (the taps read silu's output).
                let grad = |f: fn(Tensor<3>, usize) -> Tensor<3>| {
                    let p = x.clone().require_grad();
                    let g = (f(p.clone().mul_scalar(1.5), d) * w.clone())
                        .sum()
                        .backward();
                    bits(p.grad(&g).unwrap())
                };
                assert_eq!(
                    grad(taps3),
                    grad(composed_taps3),
                    "gradient {b}×{t}×{c} d={d}"
                );
            }
        }
    }

    #[test]
    fn flex_matches_the_composition_bit_for_bit() {
        check_bits(Device::flex());
        check_bits(Device::flex().autodiff());
    }

    #[test]
    fn ndarray_matches_the_composition_bit_for_bit() {
        check_bits(Device::ndarray());
        check_bits(Device::ndarray().autodiff());
    }

    /// Each tap is the input moved by its offset, zeros outside the window.
    #[test]
    fn taps_are_the_shifted_input() {
        let device = Device::flex();
        let x = Tensor::<3>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [1, 4, 1]), &device);
        let v: Vec<f32> = taps3(x, 2).into_data().try_to_vec().unwrap();
        #[rustfmt::skip]
        assert_eq!(v, [0., 1., 3., 0., 2., 4., 1., 3., 0., 2., 4., 0.]);
    }
}
