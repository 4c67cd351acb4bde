//! Batches of transformed images, decoded in parallel on a background thread so that loading
//! overlaps the caller's compute.
//!
//! Reproducibility: the shuffle order depends only on (seed, epoch), and each sample's
//! augmentation on (seed, epoch, sample index, view index), so batches are identical for any
//! worker count.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::transform::Pipeline;
use crate::{DataError, ImageDataset, Target, class_counts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Reshuffle every epoch (from seed and epoch).
    pub shuffle: bool,
    /// Skip the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    pub seed: u64,
    /// Decode threads; 0 means one per CPU core.
    pub workers: usize,
    /// Finished batches queued ahead of the consumer.
    pub prefetch: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions { batch_size: 32, shuffle: false, drop_last: false, seed: 0, workers: 0, prefetch: 2 }
    }
}

/// N transformed images with their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// View 0 (the loader's first pipeline): N*C*H*W values, sample-major.
    pub images: Vec<f32>,
    /// [N, C, H, W] of `images`.
    pub shape: [usize; 4],
    /// Views 1.. of the same samples, in the order of [`Loader::with_views`]'s pipelines (e.g.
    /// DINO's second global crop and its local crops); empty for [`Loader::new`].
    pub extra_views: Vec<View>,
    pub targets: Vec<Target>,
    /// Index of each sample in the loader's dataset.
    pub indices: Vec<usize>,
    pub num_classes: usize,
}

/// One more augmented view of every sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// N*C*H*W values, sample-major, samples in the batch's order.
    pub images: Vec<f32>,
    /// [N, C, H, W]
    pub shape: [usize; 4],
}

impl Batch {
    /// One class index per sample. Meant for single-label tasks: a multi-label sample maps to its
    /// first positive class, a box to its class, and a sample without one (no positive label, a
    /// box without a class, an unlabelled sample) to 0.
    pub fn class_labels(&self) -> Vec<usize> {
        self.targets
            .iter()
            .map(|t| match t {
                Target::Class(c) => *c,
                _ => t.positives().first().copied().unwrap_or(0),
            })
            .collect()
    }

    /// The normalized `[x0, y0, x1, y1]` of every sample, in batch order; `None` unless every
    /// target is a box.
    pub fn boxes(&self) -> Option<Vec<[f32; 4]>> {
        self.targets
            .iter()
            .map(|t| match t {
                Target::Box { bbox, .. } => Some(*bbox),
                _ => None,
            })
            .collect()
    }

    /// Whether every sample has a target: false when any is [`Target::None`] (a batch of an
    /// [`crate::Unlabelled`] view), so a step can skip its supervised terms.
    pub fn is_labelled(&self) -> bool {
        !self.targets.iter().any(|t| matches!(t, Target::None))
    }

    /// All views in order: view 0 (`images`, `shape`), then `extra_views`.
    pub fn views(&self) -> impl Iterator<Item = (&[f32], [usize; 4])> {
        std::iter::once((self.images.as_slice(), self.shape)).chain(self.extra_views.iter().map(|v| (v.images.as_slice(), v.shape)))
    }

    /// The batch cut into at most `parts` consecutive shards, one per device of a data-parallel
    /// step: sizes differ by at most one, larger first, and no shard is empty (a batch of 3
    /// samples in 4 parts gives 3 shards).
    pub fn split(self, parts: usize) -> Vec<Batch> {
        let n = self.targets.len();
        let parts = parts.clamp(1, n.max(1));
        let mut start = 0;
        (0..parts)
            .map(|part| {
                let len = n / parts + usize::from(part < n % parts);
                let range = start..start + len;
                start += len;
                let rows = |images: &[f32], shape: [usize; 4]| {
                    let per_sample = shape[1] * shape[2] * shape[3];
                    (images[range.start * per_sample..range.end * per_sample].to_vec(), [len, shape[1], shape[2], shape[3]])
                };
                let (images, shape) = rows(&self.images, self.shape);
                Batch {
                    images,
                    shape,
                    extra_views: self
                        .extra_views
                        .iter()
                        .map(|v| {
                            let (images, shape) = rows(&v.images, v.shape);
                            View { images, shape }
                        })
                        .collect(),
                    targets: self.targets[range.clone()].to_vec(),
                    indices: self.indices[range].to_vec(),
                    num_classes: self.num_classes,
                }
            })
            .collect()
    }

    /// N*num_classes 0/1 values; a single-label sample is one-hot.
    pub fn multi_hot(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.targets.len() * self.num_classes];
        for (row, t) in out.chunks_mut(self.num_classes.max(1)).zip(&self.targets) {
            for c in t.positives() {
                row[c] = 1.0;
            }
        }
        out
    }
}

pub struct Loader {
    dataset: Arc<dyn ImageDataset>,
    /// One pipeline per view; view 0 fills `Batch::images`.
    views: Arc<[Arc<Pipeline>]>,
    options: LoaderOptions,
    pool: Arc<rayon::ThreadPool>,
    /// Re-sampling ([`Loader::resampled`]): each epoch draws its samples from this distribution.
    draws: Option<WeightedIndex<f64>>,
    /// Passes over part of the samples between batches of the rest ([`Loader::interleaved`]).
    interleave: Option<Interleave>,
}

/// An epoch made of two groups of samples (DISTL's unlabelled pool and its labelled set, for the
/// correction passes): the `main` samples shuffled into batches, with a whole shuffled pass over
/// the `inserted` samples before main batch 0, `every`, 2·`every`, … (`every = 0`: none; no
/// `main` samples: one pass per epoch). A batch never mixes the groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interleave {
    pub main: Vec<usize>,
    pub inserted: Vec<usize>,
    pub every: usize,
}

/// Each (epoch, slot) reads its own region of one ChaCha keystream: slot 0 shuffles, slot i+1
/// augments sample i. Unlike std's hasher this is stable across Rust releases.
fn rng_for(seed: u64, epoch: usize, slot: usize) -> ChaCha8Rng {
    rng_for_view(seed, epoch, 0, slot)
}

/// View 0 keeps [`rng_for`]'s layout (stream = epoch), so single-view batches, and the weights
/// trained on them, stay as they were. View v > 0 reads stream `v << 32 | epoch` with the same
/// slots: its streams have a bit at or above 32 set, so they never meet view 0's (epochs stay
/// below 2^32) nor another view's, and each view draws its own augmentation.
fn rng_for_view(seed: u64, epoch: usize, view: usize, slot: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((view as u64) << 32) | epoch as u64);
    rng.set_word_pos((slot as u128) << 32);
    rng
}

impl Loader {
    pub fn new(dataset: Arc<dyn ImageDataset>, transform: Arc<Pipeline>, options: LoaderOptions) -> Result<Loader, DataError> {
        Self::with_views(dataset, vec![transform], options)
    }

    /// A loader whose batches carry one view per pipeline (multi-crop): view 0 in
    /// `Batch::images`, exactly as [`Loader::new`] with `views[0]` gives it, the others in
    /// `Batch::extra_views`. Each image is decoded once for all views.
    pub fn with_views(dataset: Arc<dyn ImageDataset>, views: Vec<Arc<Pipeline>>, options: LoaderOptions) -> Result<Loader, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::config("loader batch_size must be > 0"));
        }
        if views.is_empty() {
            return Err(DataError::config("a loader needs at least one view pipeline"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.workers)
            .thread_name(|i| format!("medkd-decode-{i}"))
            .build()
            .map_err(|e| DataError::Worker(format!("cannot start decode threads: {e}")))?;
        Ok(Loader { dataset, views: views.into(), options, pool: Arc::new(pool), draws: None, interleave: None })
    }

    /// Re-sampling for long-tailed data: each epoch draws as many samples as the dataset has,
    /// with replacement, sample `i` with probability proportional to `weights[i]` (see
    /// [`sampling_weights`]), in place of every sample once. The draws depend only on (seed,
    /// epoch); a sample drawn twice in an epoch gets the same augmentation both times.
    pub fn resampled(mut self, weights: &[f64]) -> Result<Loader, DataError> {
        if weights.len() != self.dataset.len() {
            return Err(DataError::config(format!(
                "re-sampling needs one weight per sample: got {} for {} samples",
                weights.len(),
                self.dataset.len()
            )));
        }
        let draws = WeightedIndex::new(weights).map_err(|e| DataError::config(format!("re-sampling weights: {e}")))?;
        self.draws = Some(draws);
        Ok(self)
    }

    /// Epochs laid out by `interleave` in place of one shuffled pass over every sample.
    pub fn interleaved(mut self, interleave: Interleave) -> Result<Loader, DataError> {
        let len = self.dataset.len();
        if let Some(bad) = interleave.main.iter().chain(&interleave.inserted).find(|&&i| i >= len) {
            return Err(DataError::config(format!("interleaved loader: sample {bad} out of range for {len} samples")));
        }
        for (name, group) in [("the main group", &interleave.main), ("the inserted group", &interleave.inserted)] {
            if !group.is_empty() && self.group_batches(group.len()) == 0 {
                return Err(DataError::config(format!(
                    "{name} has {} samples, fewer than one batch of {}: lower `train.batch_size`",
                    group.len(),
                    self.options.batch_size
                )));
            }
        }
        if interleave.main.is_empty() && interleave.inserted.is_empty() {
            return Err(DataError::config("interleaved loader: both groups are empty"));
        }
        self.interleave = Some(interleave);
        Ok(self)
    }

    fn group_batches(&self, n: usize) -> usize {
        let b = self.options.batch_size;
        if self.options.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// Passes over the inserted group per epoch and the main group's batches.
    fn interleave_counts(&self, interleave: &Interleave) -> (usize, usize) {
        let main = self.group_batches(interleave.main.len());
        let passes = match (main, interleave.every, interleave.inserted.is_empty()) {
            (_, _, true) => 0,
            (0, _, false) => 1,
            (_, 0, false) => 0,
            (main, every, false) => main.div_ceil(every),
        };
        (passes, main)
    }

    /// Views per sample: 1 for [`Loader::new`].
    pub fn num_views(&self) -> usize {
        self.views.len()
    }

    pub fn dataset(&self) -> &Arc<dyn ImageDataset> {
        &self.dataset
    }

    pub fn num_batches(&self) -> usize {
        match &self.interleave {
            Some(interleave) => {
                let (passes, main) = self.interleave_counts(interleave);
                main + passes * self.group_batches(interleave.inserted.len())
            }
            None => self.group_batches(self.dataset.len()),
        }
    }

    /// The sample indices of each batch of epoch `epoch`.
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let b = self.options.batch_size;
        if let Some(interleave) = &self.interleave {
            // Slot 0 shuffles the main group; slots past every sample's augmentation slot
            // (1..=len) shuffle the inserted passes.
            let shuffled = |group: &[usize], slot: usize| {
                let mut order = group.to_vec();
                order.shuffle(&mut rng_for(self.options.seed, epoch, slot));
                order.truncate(self.group_batches(order.len()) * b);
                order.chunks(b).map(<[usize]>::to_vec).collect::<Vec<_>>()
            };
            let (passes, _) = self.interleave_counts(interleave);
            let main = shuffled(&interleave.main, 0);
            let mut batches = Vec::with_capacity(self.num_batches());
            // With passes, `every` is 0 only when the main group is empty.
            let every = interleave.every.max(1);
            for pass in 0..passes {
                batches.extend(shuffled(&interleave.inserted, self.dataset.len() + 1 + pass));
                batches.extend(main.iter().skip(pass * every).take(every).cloned());
            }
            if passes == 0 {
                batches.extend(main);
            }
            return batches;
        }
        let mut order: Vec<usize> = match &self.draws {
            Some(draws) => {
                let mut rng = rng_for(self.options.seed, epoch, 0);
                (0..self.dataset.len()).map(|_| draws.sample(&mut rng)).collect()
            }
            None => (0..self.dataset.len()).collect(),
        };
        if self.options.shuffle && self.draws.is_none() {
            order.shuffle(&mut rng_for(self.options.seed, epoch, 0));
        }
        order.truncate(self.num_batches() * b);
        order.chunks(b).map(<[usize]>::to_vec).collect()
    }

    /// The batches of epoch `epoch`. Dropping the iterator stops the background thread.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        let batches = self.epoch_batches(epoch);
        let (tx, rx) = sync_channel(self.options.prefetch);
        let (dataset, views, pool) = (self.dataset.clone(), self.views.clone(), self.pool.clone());
        let seed = self.options.seed;
        let spawned = std::thread::Builder::new().name("medkd-loader".into()).spawn(move || {
            for indices in batches {
                let batch = pool.install(|| load_batch(dataset.as_ref(), &views, indices, seed, epoch));
                // A send error means the iterator was dropped: stop.
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        match spawned {
            Ok(handle) => EpochIter { rx: Some(rx), handle: Some(handle), startup_error: None },
            Err(e) => {
                EpochIter { rx: None, handle: None, startup_error: Some(DataError::Worker(format!("cannot start loader thread: {e}"))) }
            }
        }
    }
}

/// One transformed image and its `[C, H, W]`.
type Sample = (Vec<f32>, [usize; 3]);

fn load_batch(
    dataset: &dyn ImageDataset,
    views: &[Arc<Pipeline>],
    indices: Vec<usize>,
    seed: u64,
    epoch: usize,
) -> Result<Batch, DataError> {
    // Per sample, its views in order, and its target with any box moved as view 0 moved the image.
    let (samples, targets): (Vec<Vec<Sample>>, Vec<Target>) = indices
        .par_iter()
        .map(|&i| {
            let img = dataset.image(i)?;
            let mut target = dataset.target(i);
            let samples = (views.iter().enumerate())
                .map(|(v, transform)| {
                    let rng = &mut rng_for_view(seed, epoch, v, i + 1);
                    match &mut target {
                        Target::Box { bbox, .. } if v == 0 => {
                            let (data, shape, moved) = transform.apply_with_box(&img, Some(*bbox), rng)?;
                            *bbox = moved.expect("a box in, a box out");
                            Ok((data, shape))
                        }
                        _ => transform.apply_with_shape(&img, rng),
                    }
                })
                .collect::<Result<Vec<Sample>, DataError>>()?;
            Ok((samples, target))
        })
        .collect::<Result<Vec<_>, DataError>>()?
        .into_iter()
        .unzip();
    let mut stacked = (0..views.len()).map(|v| stack(dataset, &indices, &samples, v));
    let (images, shape) = stacked.next().expect("a loader has at least one view")?;
    let extra_views = stacked.map(|view| view.map(|(images, shape)| View { images, shape })).collect::<Result<_, _>>()?;
    Ok(Batch { images, shape, extra_views, targets, num_classes: dataset.info().num_classes(), indices })
}

/// View `view` of every sample as one N*C*H*W block; every sample must have the same shape.
fn stack(dataset: &dyn ImageDataset, indices: &[usize], samples: &[Vec<Sample>], view: usize) -> Result<(Vec<f32>, [usize; 4]), DataError> {
    let chw = samples[0][view].1;
    if let Some(pos) = samples.iter().position(|s| s[view].1 != chw) {
        let which = if view == 0 { String::new() } else { format!("view {view}: ") };
        return Err(DataError::Batch {
            index: indices[pos],
            id: dataset.id(indices[pos]),
            message: format!(
                "{which}transformed shape {:?} differs from {chw:?} of sample {}; end the transforms with a fixed-size resize or crop",
                samples[pos][view].1, indices[0]
            ),
        });
    }
    // Copied sample by sample (a memcpy each): a flat_map over the values took about a fifth of the
    // HAM10000 loader's time.
    let mut images = Vec::with_capacity(samples.iter().map(|s| s[view].0.len()).sum());
    for s in samples {
        images.extend_from_slice(&s[view].0);
    }
    Ok((images, [indices.len(), chw[0], chw[1], chw[2]]))
}

/// The batches of one epoch, produced ahead on a background thread.
pub struct EpochIter {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    handle: Option<JoinHandle<()>>,
    startup_error: Option<DataError>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.startup_error.take() {
            return Some(Err(e));
        }
        if let Ok(batch) = self.rx.as_ref()?.recv() {
            return Some(batch);
        }
        // The producer is gone: either the epoch is complete or the thread panicked.
        self.rx = None;
        let joined = self.handle.take()?.join();
        joined.err().map(|panic| {
            let message =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(DataError::Worker(format!("loader thread panicked: {message}")))
        })
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the channel first makes a producer blocked in `send` return, so `join` is quick.
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::*;

    #[test]
    fn view_0_reads_the_single_view_stream_and_other_views_their_own() {
        let draws = |mut rng: ChaCha8Rng| (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>();
        // The layout single-view loaders have always used: trained weights depend on it.
        let mut before = ChaCha8Rng::seed_from_u64(7);
        before.set_stream(3);
        before.set_word_pos(5u128 << 32);
        let view_0 = draws(rng_for_view(7, 3, 0, 5));
        assert_eq!(view_0, draws(before));
        assert_eq!(view_0, draws(rng_for(7, 3, 5)));
        let view_1 = draws(rng_for_view(7, 3, 1, 5));
        assert_ne!(view_1, view_0);
        assert_ne!(view_1, draws(rng_for_view(7, 3, 2, 5)));
        assert_ne!(view_1, draws(rng_for_view(7, 4, 1, 5)));
    }

    #[test]
    fn a_split_batch_keeps_every_sample_once_in_order_with_all_its_views() {
        // 7 samples of 1x2x1 values in view 0 and 1x1x1 in a second view; sample i holds i.
        let batch = Batch {
            images: (0..7).flat_map(|i| [i as f32, i as f32 + 0.5]).collect(),
            shape: [7, 1, 2, 1],
            extra_views: vec![View { images: (0..7).map(|i| -(i as f32)).collect(), shape: [7, 1, 1, 1] }],
            targets: (0..7).map(|i| Target::Class(i % 3)).collect(),
            indices: (10..17).collect(),
            num_classes: 3,
        };
        let shards = batch.clone().split(3);
        assert_eq!(shards.iter().map(|s| s.shape[0]).collect::<Vec<_>>(), [3, 2, 2]);
        assert_eq!(shards[1].images, [3.0, 3.5, 4.0, 4.5]);
        assert_eq!(shards[2].extra_views[0], View { images: vec![-5.0, -6.0], shape: [2, 1, 1, 1] });
        assert_eq!(shards[2].targets, [Target::Class(2), Target::Class(0)]);
        assert_eq!(shards.iter().flat_map(|s| s.indices.clone()).collect::<Vec<_>>(), batch.indices);
        assert_eq!(shards.iter().flat_map(|s| s.images.clone()).collect::<Vec<_>>(), batch.images);
        // More parts than samples: one shard per sample, none empty.
        assert_eq!(batch.clone().split(9).len(), 7);
        assert_eq!(batch.clone().split(1), vec![batch]);
    }
}

/// Class re-sampling rules for long-tailed training sets (`train.sampling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every class equally often: sample weight `1 / n_c`.
    ClassBalanced,
    /// Class `c` in proportion to `sqrt(n_c)`: sample weight `1 / sqrt(n_c)`.
    SquareRoot,
}

/// Per-sample draw weights of `rule` for [`Loader::resampled`]; every sample needs one class.
pub fn sampling_weights(dataset: &dyn ImageDataset, rule: Sampling) -> Result<Vec<f64>, DataError> {
    let counts = class_counts(dataset);
    (0..dataset.len())
        .map(|i| match dataset.target(i) {
            Target::Class(c) => {
                let n = counts[c] as f64;
                Ok(match rule {
                    Sampling::ClassBalanced => 1.0 / n,
                    Sampling::SquareRoot => 1.0 / n.sqrt(),
                })
            }
            other => Err(DataError::config(format!(
                "class re-sampling needs one class per sample, but sample {i} ({}) has {other:?}",
                dataset.id(i)
            ))),
        })
        .collect()
}
