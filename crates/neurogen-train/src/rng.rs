//! Host randomness keyed by (seed, purpose, index), so no RNG state needs saving.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// What a stream is for; distinct streams never share draws.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Epoch = 1,
    TrainNoise = 2,
    ValidNoise = 3,
    Dequantise = 4,
    Init = 5,
    Score = 6,
    Discriminate = 7,
    Adversarial = 8,
}

/// SplitMix64 finaliser: decorrelates nearby keys.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator for `(seed, stream, index)`.
pub(crate) fn rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed ^ (stream as u64).rotate_left(56)) ^ index))
}

/// `n` standard-normal draws.
pub(crate) fn normals(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// `n` uniform draws on [0, 1).
pub(crate) fn uniforms(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>()).collect()
}

/// Training windows for 1-based `step`: epochs are fresh permutations, the last partial
/// batch of an epoch is dropped.
pub(crate) fn batch_indices(seed: u64, step: u64, n: usize, batch: usize) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let (epoch, k) = ((step - 1) / per_epoch, ((step - 1) % per_epoch) as usize);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng(seed, Stream::Epoch, epoch));
    perm[k * batch..(k + 1) * batch].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_visits_each_window_once() {
        let mut seen: Vec<usize> = (1..=10)
            .flat_map(|s| batch_indices(7, s, 100, 10))
            .collect();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_ne!(batch_indices(7, 1, 100, 10), batch_indices(7, 11, 100, 10));
        assert_eq!(batch_indices(7, 3, 100, 10), batch_indices(7, 3, 100, 10));
    }
}
