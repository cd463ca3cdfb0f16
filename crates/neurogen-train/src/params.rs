//! Walking a module's parameters: by dotted module path (the names checkpoints, parity reports
//! and the NaN guard use), and the few maps the trainers apply to every parameter.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// What to do with each float parameter, given its dotted path (e.g. `encoder.layers.0.weight`).
pub(crate) trait ParamFn {
    /// Called once per float parameter, in the module's visiting order.
    fn param<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>);
}

/// Calls `f` on every float parameter of `module` with its path.
pub(crate) fn for_each_param<M: Module, F: ParamFn>(module: &M, f: F) -> F {
    let mut v = Paths {
        path: Vec::new(),
        f,
    };
    module.visit(&mut v);
    v.f
}

/// The one module-path visitor: keeps the path of the module being visited.
struct Paths<F> {
    path: Vec<String>,
    f: F,
}

impl<F: ParamFn> ModuleVisitor for Paths<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.f.param(&self.path.join("."), param);
    }
}

/// Path of the first float parameter of `module` holding a NaN or an infinity.
pub(crate) fn first_non_finite<M: Module>(module: &M) -> Option<String> {
    struct First(Option<String>);
    impl ParamFn for First {
        fn param<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if self.0.is_some() {
                return;
            }
            let finite = param.val().is_finite().all().try_into_scalar::<bool>();
            if matches!(finite, Ok(false)) {
                self.0 = Some(path.to_string());
            }
        }
    }
    for_each_param(module, First(None)).0
}

/// Every parameter's gradient read to the host, by path. Parameters without a gradient (a
/// fixed σ, power-iteration vectors) are left out, as on every backend.
pub(crate) fn collect_grads<M: Module>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<(String, Vec<f32>)> {
    struct Grads<'a>(&'a GradientsParams, Vec<(String, Vec<f32>)>);
    impl ParamFn for Grads<'_> {
        fn param<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                let values = g.into_data().try_to_vec::<f32>().unwrap_or_default();
                self.1.push((path.to_string(), values));
            }
        }
    }
    for_each_param(module, Grads(grads, Vec::new())).1
}

/// `module` with `delta` added to every float parameter: parity's demonstration of what a real
/// difference between backends looks like.
pub(crate) fn bumped<M: Module>(module: M, delta: f32) -> M {
    struct Bump(f32);
    impl ModuleMapper for Bump {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let d = self.0;
            // A fresh leaf, so the perturbed weights are what gradients are taken against.
            param.map(|t| {
                let leaf = t.is_require_grad();
                let t = t.add_scalar(d).detach();
                if leaf {
                    t.require_grad()
                } else {
                    t
                }
            })
        }
    }
    module.map(&mut Bump(delta))
}

/// The moving average `ema` after one step towards `current` (same architecture):
/// `θ ← d·θ + (1 − d)·θ_current` for each float parameter, in visiting order.
pub(crate) fn blend<M: Module>(ema: M, current: &M, decay: f32) -> M {
    struct Collect(Vec<Tensor<1>>);
    impl ParamFn for Collect {
        fn param<const D: usize>(&mut self, _path: &str, param: &Param<Tensor<D>>) {
            let t = param.val();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    struct Blend {
        src: std::vec::IntoIter<Tensor<1>>,
        decay: f32,
    }
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            match self.src.next() {
                Some(s) => {
                    let d = self.decay;
                    param.map(|t| {
                        let dims = t.dims();
                        t.mul_scalar(d) + s.reshape(dims).mul_scalar(1.0 - d)
                    })
                }
                None => param,
            }
        }
    }
    let src = for_each_param(current, Collect(Vec::new())).0;
    ema.map(&mut Blend {
        src: src.into_iter(),
        decay,
    })
}

/// Every float parameter flattened onto the host, in visiting order (for tests).
#[cfg(test)]
pub(crate) fn host_params<M: Module>(module: &M) -> Vec<f32> {
    struct All(Vec<f32>);
    impl ParamFn for All {
        fn param<const D: usize>(&mut self, _path: &str, param: &Param<Tensor<D>>) {
            self.0.extend(
                param
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default(),
            );
        }
    }
    for_each_param(module, All(Vec::new())).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Two {
        first: Linear,
        second: Linear,
    }

    #[test]
    fn the_first_non_finite_parameter_is_named_by_its_path() {
        let device = Device::flex();
        let mut m = Two {
            first: LinearConfig::new(3, 4).init(&device),
            second: LinearConfig::new(4, 2).init(&device),
        };
        assert_eq!(first_non_finite(&m), None);
        let bad = m.second.weight.val().mul_scalar(f32::NAN);
        m.second.weight = Param::from_tensor(bad);
        assert_eq!(first_non_finite(&m).as_deref(), Some("second.weight"));
    }

    #[test]
    fn a_bump_moves_every_parameter_and_a_blend_lands_between() {
        let device = Device::flex();
        let m = Two {
            first: LinearConfig::new(3, 4).init(&device),
            second: LinearConfig::new(4, 2).init(&device),
        };
        let before = host_params(&m);
        let moved = bumped(m.clone(), 0.5);
        let after = host_params(&moved);
        assert_eq!(before.len(), 3 * 4 + 4 + 4 * 2 + 2);
        for (a, b) in before.iter().zip(&after) {
            assert!((b - a - 0.5).abs() < 1e-6);
        }
        // Decay ¾: a quarter of the way towards the bumped weights.
        let ema = host_params(&blend(m, &moved, 0.75));
        for (a, e) in before.iter().zip(&ema) {
            assert!((e - a - 0.125).abs() < 1e-6, "{a} → {e}");
        }
    }
}
