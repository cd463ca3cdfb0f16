//! `sigmoid`, `tanh` and `silu` as single backend ops with their own backward pass.
//!
//! The one decision here: **same numbers, fewer passes.** burn-flex evaluates each of these on
//! one thread through libm (`expf`, `tanhf`), and burn's autodiff evaluates the function a
//! second time in the backward pass (`sigmoid` and `tanh` keep their input, not their output).
//! `silu` is three ops forward and five backward. Measured with `perf` on the bench workloads,
//! that was 37 % of the diffusion step and 50 % of the WaveNet's.
//!
//! Here each activation is one [`backend_extension`] op: on flex, one pass split over the rayon
//! pool, in place when the input is not shared; its backward reuses the saved output. Every
//! element goes through the same floating-point operations in the same order as burn's
//! composition, and `exp` and `tanh` give libm's bits (`vmath.rs` evaluates them a block
//! of 256 at a time, vectorised), so results are bit-identical to it on every backend (the
//! tests compare bits), and a run trains exactly as before, only faster. Other backends (ndarray,
//! wgpu) take burn's own ops through the trait's default bodies, with the saved-output backward.
//!
//! The flex kernels are what burn-flex itself could do (`burn-flex/src/ops/activation.rs`
//! evaluates `sigmoid` with `unary_op`, single-threaded) and are written so they could be offered
//! upstream.

// burn marks ndarray deprecated; neurogen still offers it as a backend, and the extension macro
// names every backend it routes to.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch};
use burn::tensor::Tensor;

/// `σ(x) = 1 / (1 + e^(−x))`, element-wise.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Activations>::act_sigmoid(x.into_dispatch()))
}

/// `tanh(x)`, element-wise.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Activations>::act_tanh(x.into_dispatch()))
}

/// `silu(x) = x·σ(x)`, element-wise.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Activations>::act_silu(x.into_dispatch()))
}

/// `tanh(x)` as `2·σ(2x) − 1`, the latent ODE's tanh.
///
/// libm's `tanhf` (through `expm1f`) costs about twice `expf`: this form of tanh was 31 % of a
/// latent-ODE training step when it was `tanh`, and the latent ODE's runs are pinned to it
/// (absolute error below 1e-6 against tanh).
pub fn logistic_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Activations>::act_logistic_tanh(
        x.into_dispatch(),
    ))
}

/// The activations as backend ops. The default bodies are burn's own ops, composed as
/// `burn::tensor::activation` and burn's autodiff compose them; flex overrides them.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait Activations: Backend {
    /// `σ(x)`.
    fn act_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::sigmoid(x)
    }
    /// `grad·σ·(1 − σ)` from the output `σ`.
    fn act_sigmoid_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::sigmoid_backward(y, grad)
    }
    /// `tanh(x)`.
    fn act_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_tanh(x)
    }
    /// `grad·(1 − y²)` from the output `y`.
    fn act_tanh_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::tanh_backward::<Self>(y, grad)
    }
    /// `2·σ(2x) − 1`.
    fn act_logistic_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::logistic_tanh::<Self>(x)
    }
    /// Its gradient, from the input.
    fn act_logistic_tanh_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::logistic_tanh_backward::<Self>(x, grad)
    }
    /// `x·σ(x)`.
    fn act_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::silu::<Self>(x)
    }
    /// The gradient of `x·s`, `s = σ(x)`.
    fn act_silu_backward(
        x: FloatTensor<Self>,
        s: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::silu_backward::<Self>(x, s, grad)
    }
}

/// The activations from burn's own ops, in the order burn's `activation` module and its autodiff
/// compose them: the trait's default bodies, and flex's for what its kernels do not take.
mod composed {
    use super::*;

    /// `grad · (−y² + 1)`, as burn's autodiff forms tanh's gradient.
    pub(super) fn tanh_backward<B: Backend>(
        y: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let value =
            B::float_add_scalar(B::float_neg(B::float_powi_scalar(y, 2.into())), 1f32.into());
        B::float_mul(grad, value)
    }

    pub(super) fn logistic_tanh<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let s = B::sigmoid(B::float_mul_scalar(x, 2f32.into()));
        B::float_sub_scalar(B::float_mul_scalar(s, 2f32.into()), 1f32.into())
    }

    /// `((2·grad)·σ·(1 − σ))·2`, `σ = σ(2x)`: the chain of `logistic_tanh`'s three ops.
    pub(super) fn logistic_tanh_backward<B: Backend>(
        x: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let s = B::sigmoid(B::float_mul_scalar(x, 2f32.into()));
        let g = B::sigmoid_backward(s, B::float_mul_scalar(grad, 2f32.into()));
        B::float_mul_scalar(g, 2f32.into())
    }

    pub(super) fn silu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let s = B::sigmoid(x.clone());
        B::float_mul(x, s)
    }

    /// `grad·s + ((grad·x)·s)·(1 − s)`: the two paths of `x·σ(x)`, summed.
    pub(super) fn silu_backward<B: Backend>(
        x: FloatTensor<B>,
        s: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let through_x = B::float_mul(grad.clone(), s.clone());
        let through_s = B::sigmoid_backward(s, B::float_mul(grad, x));
        B::float_add(through_x, through_s)
    }
}

#[cfg(feature = "ndarray")]
impl Activations for burn::backend::NdArray {}
#[cfg(feature = "wgpu")]
impl Activations for burn::backend::Cube {}

/// The flex kernels (built with the `flex` feature).
#[cfg(feature = "flex")]
pub(crate) mod flex {
    use super::*;
    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::{DType, TensorData};
    use rayon::prelude::*;

    use crate::vmath;

    /// The argument burn-flex's `sigmoid_f32` (`burn-flex/src/ops/activation.rs`) passes to
    /// `exp`: never positive, so it cannot overflow.
    #[inline]
    fn sigmoid_exp_arg(x: f32) -> f32 {
        if x >= 0.0 {
            -x
        } else {
            x
        }
    }

    /// burn-flex's `sigmoid_f32`, the same branches, given `e = exp(sigmoid_exp_arg(x))`.
    #[inline]
    fn sigmoid_with(x: f32, e: f32) -> f32 {
        if x >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        }
    }

    /// Below this many elements a pass runs on the calling thread: handing it to the pool costs
    /// more than it saves.
    pub(crate) const PARALLEL_MIN: usize = 1 << 15;
    const CHUNK: usize = 1 << 13;
    /// Elements handed to a pass's vector function at once.
    const BLOCK: usize = 256;
    static ZEROS: [f32; BLOCK] = [0.0; BLOCK];

    /// One element-wise pass: `f(a, b, c, v)`, where `v = vector(arg(a, b, c))` for a pass with
    /// a `vector` function ([`vmath`]'s `exp` or `tanh`, which take a whole block at once), and
    /// 0 for one without.
    struct Pass<A, F> {
        vector: Option<fn(&mut [f32])>,
        arg: A,
        f: F,
    }

    type NoArg = fn(f32, f32, f32) -> f32;

    impl<F: Fn(f32, f32, f32, f32) -> f32 + Sync> Pass<NoArg, F> {
        /// A pass that needs no vector function.
        fn plain(f: F) -> Self {
            Pass {
                vector: None,
                arg: |_, _, _| 0.0,
                f,
            }
        }
    }

    impl<A, F> Pass<A, F>
    where
        A: Fn(f32, f32, f32) -> f32 + Sync,
        F: Fn(f32, f32, f32, f32) -> f32 + Sync,
    {
        /// A pass whose elements need `vector(arg(a, b, c))`.
        fn with(vector: fn(&mut [f32]), arg: A, f: F) -> Self {
            Pass {
                vector: Some(vector),
                arg,
                f,
            }
        }

        /// The pass over `out` (which holds `c`), starting at element `base` of `a` and `b`:
        /// each is empty (read as zeros) or as long as the whole tensor.
        fn run(&self, a: &[f32], b: &[f32], base: usize, out: &mut [f32]) {
            let mut v = [0.0f32; BLOCK];
            for (k, o) in out.chunks_mut(BLOCK).enumerate() {
                let n = o.len();
                let r = base + k * BLOCK..base + k * BLOCK + n;
                let a = a.get(r.clone()).unwrap_or(&ZEROS[..n]);
                let b = b.get(r).unwrap_or(&ZEROS[..n]);
                let v = &mut v[..n];
                if let Some(vector) = self.vector {
                    for (((v, &a), &b), &c) in v.iter_mut().zip(a).zip(b).zip(&*o) {
                        *v = (self.arg)(a, b, c);
                    }
                    vector(v);
                }
                for (((o, &a), &b), &v) in o.iter_mut().zip(a).zip(b).zip(&*v) {
                    *o = (self.f)(a, b, *o, v);
                }
            }
        }

        /// The pass over `out` in place (`c` is `out`), over the pool for large tensors.
        fn in_place(&self, a: &[f32], b: &[f32], out: &mut [f32]) {
            if out.len() < PARALLEL_MIN {
                self.run(a, b, 0, out);
            } else {
                out.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(k, o)| self.run(a, b, k * CHUNK, o));
            }
        }

        /// The pass on flex tensors, over `t`'s own buffer when it can.
        fn map(
            &self,
            a: Option<&FlexTensor>,
            b: Option<&FlexTensor>,
            mut t: FlexTensor,
        ) -> FlexTensor {
            let with_ab = |g: &mut dyn FnMut(&[f32], &[f32])| match (a, b) {
                (Some(a), Some(b)) => read(a, |a| read(b, |b| g(a, b))),
                (Some(a), None) => read(a, |a| g(a, &[])),
                _ => g(&[], &[]),
            };
            if !t.is_contiguous() {
                // A strided view: one copy into a buffer of its own, then the pass in place.
                t = t.to_contiguous();
            }
            if let Some(out) = writable(&mut t) {
                with_ab(&mut |a, b| self.in_place(a, b, out));
                return t;
            }
            // Shared: the pass over a copy of its own.
            let shape = t.layout().shape().clone();
            let mut values = read(&t, <[f32]>::to_vec);
            with_ab(&mut |a, b| self.in_place(a, b, &mut values));
            FlexTensor::from_data(TensorData::new(values, shape))
        }
    }

    /// A flex f32 tensor's values, read where they lie (copied only from a strided view).
    pub(crate) fn read<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
        match t.as_slice::<f32>() {
            Some(s) => f(s),
            None => {
                let c = t.to_contiguous();
                f(&c.storage::<f32>()[..c.layout().num_elements()])
            }
        }
    }

    /// A flex f32 tensor's own buffer, when nothing else holds it and it is laid out plainly.
    fn writable(t: &mut FlexTensor) -> Option<&mut [f32]> {
        let n = t.layout().num_elements();
        if !(t.is_contiguous() && t.layout().start_offset() == 0) {
            return None;
        }
        t.try_storage_mut::<f32>().filter(|s| s.len() == n)
    }

    /// Whether the kernels take these tensors: all f32, of one shape.
    fn kernel_takes(ts: &[&FlexTensor]) -> bool {
        let shape = ts[0].layout().shape();
        ts.iter()
            .all(|t| t.dtype() == DType::F32 && t.layout().shape() == shape)
    }

    /// `f(x, exp(arg(x)))` element-wise on flex.
    fn flex_unary_exp(
        x: FlexTensor,
        arg: impl Fn(f32) -> f32 + Sync,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> FlexTensor {
        Pass::with(vmath::exp_in_place, |_, _, x| arg(x), |_, _, x, e| f(x, e)).map(None, None, x)
    }

    /// `f(a, grad)` element-wise on flex.
    fn flex_binary(
        a: FlexTensor,
        grad: FlexTensor,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> FlexTensor {
        Pass::plain(|a, _, g, _| f(a, g)).map(Some(&a), None, grad)
    }

    impl Activations for Flex {
        fn act_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if !kernel_takes(&[&x]) {
                return Self::sigmoid(x);
            }
            flex_unary_exp(x, sigmoid_exp_arg, sigmoid_with)
        }

        fn act_sigmoid_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if !kernel_takes(&[&y, &grad]) {
                return Self::sigmoid_backward(y, grad);
            }
            flex_binary(y, grad, |s, g| g * s * (1.0 - s))
        }

        fn act_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if !kernel_takes(&[&x]) {
                return Self::float_tanh(x);
            }
            Pass::with(vmath::tanh_in_place, |_, _, x| x, |_, _, _, t| t).map(None, None, x)
        }

        fn act_tanh_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            if !kernel_takes(&[&y, &grad]) {
                return composed::tanh_backward::<Self>(y, grad);
            }
            flex_binary(y, grad, |y, g| g * (-(y * y) + 1.0))
        }

        fn act_logistic_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if !kernel_takes(&[&x]) {
                return composed::logistic_tanh::<Self>(x);
            }
            flex_unary_exp(
                x,
                |x| sigmoid_exp_arg(x * 2.0),
                |x, e| sigmoid_with(x * 2.0, e) * 2.0 - 1.0,
            )
        }

        fn act_logistic_tanh_backward(
            x: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if !kernel_takes(&[&x, &grad]) {
                return composed::logistic_tanh_backward::<Self>(x, grad);
            }
            Pass::with(
                vmath::exp_in_place,
                |x, _, _| sigmoid_exp_arg(x * 2.0),
                |x, _, g, e| {
                    let s = sigmoid_with(x * 2.0, e);
                    (g * 2.0) * s * (1.0 - s) * 2.0
                },
            )
            .map(Some(&x), None, grad)
        }

        fn act_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
            if !kernel_takes(&[&x]) {
                return composed::silu::<Self>(x);
            }
            flex_unary_exp(x, sigmoid_exp_arg, |x, e| x * sigmoid_with(x, e))
        }

        fn act_silu_backward(
            x: FloatTensor<Self>,
            s: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if !kernel_takes(&[&x, &s, &grad]) {
                return composed::silu_backward::<Self>(x, s, grad);
            }
            Pass::plain(|x, s, g, _| g * s + (g * x) * s * (1.0 - s)).map(Some(&x), Some(&s), grad)
        }
    }
}

/// The backward of an activation from one saved tensor (its output, or its input).
macro_rules! saved_backward {
    ($name:ident, $backward:ident) => {
        #[derive(Debug)]
        struct $name;

        impl<B: Backend + Activations> Backward<B, 1> for $name {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::$backward(ops.state, grad));
                }
            }
        }
    };
}

saved_backward!(SigmoidBackward, act_sigmoid_backward);
saved_backward!(TanhBackward, act_tanh_backward);
// Saves the input instead: its backward pass recomputes σ(2x), which costs less than keeping it.
saved_backward!(LogisticTanhBackward, act_logistic_tanh_backward);

#[derive(Debug)]
struct SiluBackward;

impl<B: Backend + Activations> Backward<B, 1> for SiluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _c: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(parent)] = ops.parents {
            let (x, s) = ops.state;
            grads.register::<B>(parent.id, B::act_silu_backward(x, s, grad));
        }
    }
}

/// Which tensor an activation keeps for its backward.
enum Saved {
    Input,
    Output,
}

/// `f` on the inner backend, recorded on the autodiff graph with `K` as its backward.
fn record<B, C, K>(
    backward: K,
    saved: Saved,
    x: FloatTensor<Autodiff<B, C>>,
    f: impl FnOnce(FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    K: Backward<B, 1, State = FloatTensor<B>>,
{
    match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let x = x.into_primitive();
            match saved {
                Saved::Input => prep.finish(x.clone(), f(x)),
                Saved::Output => {
                    let y = f(x);
                    prep.finish(y.clone(), y)
                }
            }
        }
        OpsKind::UnTracked(prep) => prep.finish(f(x.into_primitive())),
    }
}

impl<B: Backend + Activations, C: CheckpointStrategy> Activations for Autodiff<B, C> {
    fn act_sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<B, C, _>(SigmoidBackward, Saved::Output, x, B::act_sigmoid)
    }

    fn act_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<B, C, _>(TanhBackward, Saved::Output, x, B::act_tanh)
    }

    fn act_logistic_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<B, C, _>(LogisticTanhBackward, Saved::Input, x, B::act_logistic_tanh)
    }

    fn act_silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SiluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let s = B::act_sigmoid(x.clone());
                let y = B::float_mul(x.clone(), s.clone());
                prep.finish((x, s), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::act_silu(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flex::PARALLEL_MIN;
    use super::*;
    use burn::tensor::activation as burn_act;
    use burn::tensor::{Device, Distribution, TensorData};

    type Act = fn(Tensor<2>) -> Tensor<2>;
    type Exact = fn(f64) -> f64;

    /// Ours and burn's composition of each activation.
    fn pairs() -> [(&'static str, Act, Act); 4] {
        [
            ("logistic_tanh", logistic_tanh, |x| {
                burn_act::sigmoid(x.mul_scalar(2.0))
                    .mul_scalar(2.0)
                    .sub_scalar(1.0)
            }),
            ("sigmoid", sigmoid, burn_act::sigmoid),
            ("tanh", tanh, |x| x.tanh()),
            ("silu", silu, burn_act::silu),
        ]
    }

    fn bits(t: Tensor<2>) -> Vec<u32> {
        let v: Vec<f32> = t.into_data().try_to_vec().unwrap();
        v.into_iter().map(f32::to_bits).collect()
    }

    /// Deterministic inputs over (−30, 30) with the edge cases: zeros of both signs, values
    /// that saturate every function, and tiny ones.
    fn input(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
        let mut v: Vec<f32> = (0..rows * cols)
            .map(|i| 30.0 * ((i as f32) * 0.618_034).sin() * ((i as f32) * 0.1).cos())
            .collect();
        let edges = [0.0, -0.0, 95.0, -95.0, 1e-30, -1e-30, 17.5, -17.5];
        v[..edges.len()].copy_from_slice(&edges);
        Tensor::from_data(TensorData::new(v, [rows, cols]), device)
    }

    fn weights(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32) * 0.377).cos() * 2.0)
            .collect();
        Tensor::from_data(TensorData::new(v, [rows, cols]), device)
    }

    /// Forward values and input gradients are bit-identical to burn's, for contiguous, shared
    /// and strided inputs, below and above the size at which passes go parallel.
    fn check_bits(device: Device) {
        // One partial block; blocks and a partial one; whole chunks; chunks and a partial one.
        for (rows, cols) in [(7, 13), (37, 29), (256, 160), (131, 257)] {
            assert!((rows * cols < PARALLEL_MIN) == (rows < 100));
            let w = weights(rows, cols, &device);
            for (name, ours, theirs) in pairs() {
                let x = input(rows, cols, &device);
                assert_eq!(
                    bits(ours(x.clone())),
                    bits(theirs(x.clone())),
                    "{name} {rows}×{cols}"
                );
                // Unshared: the pass writes over the input's own buffer.
                assert_eq!(
                    bits(ours(input(rows, cols, &device))),
                    bits(theirs(x.clone())),
                    "{name} in place"
                );
                // A strided view (the WaveNet gate's and the GRU's narrowed halves).
                let wide = Tensor::cat(vec![x.clone(), x.clone()], 1);
                let view = wide.narrow(1, cols / 2, cols);
                assert_eq!(bits(ours(view.clone())), bits(theirs(view)), "{name} view");
                if !device.is_autodiff() {
                    continue;
                }
                let grad = |f: Act| {
                    let x = x.clone().require_grad();
                    let g = (f(x.clone()) * w.clone()).sum().backward();
                    bits(x.grad(&g).unwrap())
                };
                assert_eq!(grad(ours), grad(theirs), "{name} gradient {rows}×{cols}");
            }
        }
    }

    #[test]
    fn flex_matches_burn_bit_for_bit() {
        check_bits(Device::flex());
        check_bits(Device::flex().autodiff());
    }

    #[test]
    fn ndarray_matches_burn_bit_for_bit() {
        check_bits(Device::ndarray());
        check_bits(Device::ndarray().autodiff());
    }

    /// The logistic form of tanh is tanh, with tanh's gradient, within 1e-6, and exact at ±1
    /// where it saturates.
    #[test]
    fn logistic_tanh_and_its_gradient_match_tanh() {
        let device = Device::flex().autodiff();
        let _rng = crate::test_util::seed(&device, 5);
        let x =
            Tensor::<2>::random([9, 11], Distribution::Normal(0.0, 4.0), &device).require_grad();
        let ours = logistic_tanh(x.clone());
        let theirs = x.clone().tanh();
        let close = |a: Tensor<2>, b: Tensor<2>| {
            let d = (a - b).abs().max().into_scalar::<f32>();
            assert!(d < 1e-6, "max difference {d}");
        };
        close(ours.clone(), theirs.clone());
        let (g1, g2) = (ours.sum().backward(), theirs.sum().backward());
        close(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
        let big = Tensor::<1>::from_floats([-1e4, 1e4, 0.0], &Device::flex());
        let v: Vec<f32> = logistic_tanh(big).into_data().try_to_vec().unwrap();
        assert_eq!(v, [-1.0, 1.0, 0.0]);
    }

    /// The gradients are the functions' derivatives (central differences in f64).
    #[test]
    fn gradients_are_derivatives() {
        let device = Device::flex().autodiff();
        let xs = [-6.0f32, -1.3, -0.2, 0.0, 0.4, 2.2, 7.0];
        let exact: [(&str, Act, Exact); 4] = [
            ("logistic_tanh", logistic_tanh, f64::tanh),
            ("sigmoid", sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
            ("tanh", tanh, f64::tanh),
            ("silu", silu, |x| x / (1.0 + (-x).exp())),
        ];
        for (name, f, g) in exact {
            let x = Tensor::<2>::from_data(TensorData::new(xs.to_vec(), [1, xs.len()]), &device)
                .require_grad();
            let grads = f(x.clone()).sum().backward();
            let got: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
            for (&x, &d) in xs.iter().zip(&got) {
                let h = 1e-5;
                let want = (g(x as f64 + h) - g(x as f64 - h)) / (2.0 * h);
                assert!(
                    (d as f64 - want).abs() < 1e-5,
                    "{name}'({x}) = {d}, want {want}"
                );
            }
        }
    }
}
