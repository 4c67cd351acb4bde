//! Batches of transformed images, decoded in parallel on a background thread so that loading
//! overlaps the caller's compute.
//!
//! Reproducibility: the shuffle order depends only on (seed, epoch), and each sample's
//! augmentation on (seed, epoch, sample index), so batches are identical for any worker count.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::transform::Pipeline;
use crate::{DataError, ImageDataset, Target};

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
    /// N*C*H*W values, sample-major.
    pub images: Vec<f32>,
    /// [N, C, H, W]
    pub shape: [usize; 4],
    pub targets: Vec<Target>,
    /// Index of each sample in the loader's dataset.
    pub indices: Vec<usize>,
    pub num_classes: usize,
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
    transform: Arc<Pipeline>,
    options: LoaderOptions,
    pool: Arc<rayon::ThreadPool>,
}

/// Each (epoch, slot) reads its own region of one ChaCha keystream: slot 0 shuffles, slot i+1
/// augments sample i. Unlike std's hasher this is stable across Rust releases.
fn rng_for(seed: u64, epoch: usize, slot: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    rng.set_word_pos((slot as u128) << 32);
    rng
}

impl Loader {
    pub fn new(dataset: Arc<dyn ImageDataset>, transform: Arc<Pipeline>, options: LoaderOptions) -> Result<Loader, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::config("loader batch_size must be > 0"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.workers)
            .thread_name(|i| format!("medkd-decode-{i}"))
            .build()
            .map_err(|e| DataError::Worker(format!("cannot start decode threads: {e}")))?;
        Ok(Loader { dataset, transform, options, pool: Arc::new(pool) })
    }

    pub fn dataset(&self) -> &Arc<dyn ImageDataset> {
        &self.dataset
    }

    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.options.batch_size);
        if self.options.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// The batches of epoch `epoch`. Dropping the iterator stops the background thread.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.options.shuffle {
            order.shuffle(&mut rng_for(self.options.seed, epoch, 0));
        }
        order.truncate(self.num_batches() * self.options.batch_size);
        let batches: Vec<Vec<usize>> = order.chunks(self.options.batch_size).map(<[usize]>::to_vec).collect();

        let (tx, rx) = sync_channel(self.options.prefetch);
        let (dataset, transform, pool) = (self.dataset.clone(), self.transform.clone(), self.pool.clone());
        let seed = self.options.seed;
        let spawned = std::thread::Builder::new().name("medkd-loader".into()).spawn(move || {
            for indices in batches {
                let batch = pool.install(|| load_batch(dataset.as_ref(), &transform, indices, seed, epoch));
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

fn load_batch(dataset: &dyn ImageDataset, transform: &Pipeline, indices: Vec<usize>, seed: u64, epoch: usize) -> Result<Batch, DataError> {
    let samples = indices
        .par_iter()
        .map(|&i| {
            let img = dataset.image(i)?;
            transform.apply_with_shape(&img, &mut rng_for(seed, epoch, i + 1))
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    let chw = samples[0].1;
    if let Some(pos) = samples.iter().position(|(_, shape)| *shape != chw) {
        return Err(DataError::Batch {
            index: indices[pos],
            id: dataset.id(indices[pos]),
            message: format!(
                "transformed shape {:?} differs from {chw:?} of sample {}; end the transforms with a fixed-size resize or crop",
                samples[pos].1, indices[0]
            ),
        });
    }
    // Copied sample by sample (a memcpy each): a flat_map over the values took about a fifth of the
    // HAM10000 loader's time.
    let mut images = Vec::with_capacity(samples.iter().map(|(data, _)| data.len()).sum());
    for (data, _) in &samples {
        images.extend_from_slice(data);
    }
    Ok(Batch {
        images,
        shape: [indices.len(), chw[0], chw[1], chw[2]],
        targets: indices.iter().map(|&i| dataset.target(i)).collect(),
        num_classes: dataset.info().num_classes(),
        indices,
    })
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
