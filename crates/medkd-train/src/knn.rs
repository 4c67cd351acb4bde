//! A weighted k-nearest-neighbour classifier on a model's pooled embeddings: DINO's `eval_knn`
//! (Caron et al. 2021; Wu et al. 2018). Scores what a backbone's features are worth without a
//! trained classifier: every DINO pre-training epoch, and `medkd eval --knn` on any run.

use burn::prelude::*;
use medkd_data::{Loader, Target};
use medkd_losses::l2_normalize;
use medkd_models::Model;

use crate::TrainError;
use crate::evaluate::{Predictions, batch_tensor};

/// The classifier's two settings: `k` neighbours vote, each with weight `exp(cosine similarity /
/// temperature)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knn {
    pub k: usize,
    pub temperature: f64,
}

impl Knn {
    /// DINO's temperature for its k-NN evaluation.
    pub const DINO_TEMPERATURE: f64 = 0.07;

    /// Class probabilities for every image of `queries`: each row the normalized votes of its `k`
    /// most cosine-similar images of `bank` (all of them when the bank is smaller), whose labels
    /// are the memory. Every bank image needs a class.
    pub fn predict(
        &self,
        model: &Model,
        bank: &Loader,
        queries: &Loader,
        num_classes: usize,
        device: &Device,
    ) -> Result<Predictions, TrainError> {
        let (memory, bank_targets, bank_ids) = embeddings(model, bank, device)?;
        let bank_classes: Vec<usize> = bank_targets
            .iter()
            .zip(&bank_ids)
            .map(|(target, id)| match target {
                Target::Class(c) => Ok(*c),
                other => Err(TrainError::Input(format!("k-NN needs a class for every memory-bank image; {id} has {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        if bank_classes.is_empty() {
            return Err(TrainError::Input("k-NN needs at least one labelled image in its memory bank (the training split)".into()));
        }
        let (rows, targets, ids) = embeddings(model, queries, device)?;
        let similarity: Vec<f32> = rows.matmul(memory.transpose()).into_data().try_to_vec::<f32>().expect("f32 similarities");
        let probs = self.vote(&similarity, &bank_classes, num_classes);
        Ok(Predictions { probs, num_classes, targets, ids })
    }

    /// Each row of `similarity` (a query's similarity to every bank image, `bank_classes` their
    /// classes) as class probabilities.
    fn vote(&self, similarity: &[f32], bank_classes: &[usize], num_classes: usize) -> Vec<f32> {
        let k = self.k.min(bank_classes.len());
        let mut probs = Vec::with_capacity(similarity.len() / bank_classes.len() * num_classes);
        for row in similarity.chunks(bank_classes.len()) {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0.0f64; num_classes];
            for &j in &order[..k] {
                votes[bank_classes[j]] += (row[j] as f64 / self.temperature).exp();
            }
            let total: f64 = votes.iter().sum();
            probs.extend(votes.iter().map(|v| (v / total) as f32));
        }
        probs
    }
}

/// The L2-normalized pooled embeddings of every image of `loader` (`[N, D]`), their targets and ids.
fn embeddings(model: &Model, loader: &Loader, device: &Device) -> Result<(Tensor<2>, Vec<Target>, Vec<String>), TrainError> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let (mut rows, mut targets, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for batch in loader.epoch(0) {
        let batch = batch?;
        rows.push(l2_normalize(model.forward(batch_tensor(&batch.images, batch.shape, &device)).pooled, 1));
        ids.extend(batch.indices.iter().map(|&i| loader.dataset().id(i)));
        targets.extend(batch.targets);
    }
    Ok((Tensor::cat(rows, 0), targets, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two queries against four bank images of classes 0, 1, 1, 0: the 2 nearest vote, each
    /// with `exp(similarity / 0.1)`; a third class gets no vote.
    #[test]
    fn the_k_nearest_vote_by_their_similarity() {
        let knn = Knn { k: 2, temperature: 0.1 };
        let similarity = [0.9, 0.1, 0.5, -0.3, 0.2, 0.8, 0.7, 0.75];
        let probs = knn.vote(&similarity, &[0, 1, 1, 0], 3);
        // Query 0: bank images 0 (0.9, class 0) and 2 (0.5, class 1): p0 = 1 / (1 + e^-4).
        let p0 = 1.0 / (1.0 + (-4.0f64).exp());
        // Query 1: bank images 1 (0.8, class 1) and 3 (0.75, class 0): p0 = 1 / (1 + e^0.5).
        let q0 = 1.0 / (1.0 + 0.5f64.exp());
        let expected = [p0, 1.0 - p0, 0.0, q0, 1.0 - q0, 0.0];
        for (got, want) in probs.iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{probs:?} vs {expected:?}");
        }
        // A bank smaller than k: every image votes.
        let all = Knn { k: 10, temperature: 1.0 }.vote(&[0.0, 0.0], &[0, 1], 2);
        assert_eq!(all, [0.5, 0.5]);
    }
}
