//! Per-channel normalization, including statistics measured on the train split.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{convert_channels, to_planes};
use crate::config::NormalizeConfig;
use crate::{DataError, ImageDataset};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// At most this many train images are read to measure dataset statistics.
const STATS_SAMPLES: usize = 1000;

/// Resolved per-channel `(x - mean) / std`. Serializable so a checkpoint can record exactly what
/// the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Leaves values unchanged.
    pub fn identity(channels: usize) -> Self {
        Normalization { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// ImageNet statistics; one channel gets the mean of the three channels' values.
    pub fn imagenet(channels: usize) -> Self {
        if channels == 1 {
            let avg = |v: [f32; 3]| v.iter().sum::<f32>() / 3.0;
            Normalization { mean: vec![avg(IMAGENET_MEAN)], std: vec![avg(IMAGENET_STD)] }
        } else {
            Normalization { mean: IMAGENET_MEAN.to_vec(), std: IMAGENET_STD.to_vec() }
        }
    }

    /// The normalization `cfg` asks for, at `channels` output channels; `train` is read only for
    /// `kind = "dataset"`.
    pub fn resolve(cfg: &NormalizeConfig, channels: usize, train: &dyn ImageDataset) -> Result<Self, DataError> {
        let norm = match cfg {
            NormalizeConfig::None {} => Self::identity(channels),
            NormalizeConfig::Imagenet {} => Self::imagenet(channels),
            NormalizeConfig::Custom { mean, std } => Normalization { mean: mean.clone(), std: std.clone() },
            NormalizeConfig::Dataset {} => dataset_stats(train, channels)?,
        };
        norm.check_channels(channels)?;
        Ok(norm)
    }

    pub(crate) fn check_channels(&self, channels: usize) -> Result<(), DataError> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(DataError::config(format!(
                "normalize: mean has {} and std has {} values, but there are {channels} output channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some(s) = self.std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(DataError::config(format!("normalize: std value {s} must be > 0")));
        }
        Ok(())
    }

    /// Normalizes a CHW buffer whose planes hold `plane_len` values each.
    pub(crate) fn apply(&self, chw: &mut [f32], plane_len: usize) {
        for (c, plane) in chw.chunks_mut(plane_len).enumerate() {
            let (mean, inv_std) = (self.mean[c], 1.0 / self.std[c]);
            plane.iter_mut().for_each(|x| *x = (*x - mean) * inv_std);
        }
    }
}

/// Mean and std per output channel over a fixed, seeded subsample of `train` (untransformed images
/// at their native size). Memoized per process because teacher and student runs share splits.
fn dataset_stats(train: &dyn ImageDataset, channels: usize) -> Result<Normalization, DataError> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Normalization>>> = OnceLock::new();

    let mut indices: Vec<usize> = (0..train.len()).collect();
    if indices.len() > STATS_SAMPLES {
        indices.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
        indices.truncate(STATS_SAMPLES);
        indices.sort_unstable();
    }
    if indices.is_empty() {
        return Err(DataError::config("normalize.kind = \"dataset\" needs a non-empty train split"));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&train.info().name, train.len(), channels).hash(&mut hasher);
    indices.iter().for_each(|&i| train.id(i).hash(&mut hasher));
    let key = hasher.finish();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hit.clone());
    }

    // Per-image sums are combined in index order so the result does not depend on thread count.
    let per_image = indices
        .par_iter()
        .map(|&i| {
            let planes = convert_channels(to_planes(&train.image(i)?), channels);
            Ok(planes
                .iter()
                .map(|p| {
                    let v = p.as_raw();
                    let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
                    let sq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                    (sum, sq, v.len() as f64)
                })
                .collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    let mut totals = vec![(0.0f64, 0.0f64, 0.0f64); channels];
    for image in &per_image {
        for (t, s) in totals.iter_mut().zip(image) {
            *t = (t.0 + s.0, t.1 + s.1, t.2 + s.2);
        }
    }
    let norm = Normalization {
        mean: totals.iter().map(|t| (t.0 / t.2) as f32).collect(),
        // A constant channel would give std 0; fall back to 1 so normalization stays finite.
        std: totals
            .iter()
            .map(|t| {
                let var = (t.1 / t.2 - (t.0 / t.2).powi(2)).max(0.0);
                if var > 0.0 { var.sqrt() as f32 } else { 1.0 }
            })
            .collect(),
    };
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, norm.clone());
    Ok(norm)
}
