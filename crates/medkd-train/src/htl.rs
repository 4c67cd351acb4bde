//! Hard-to-learn (HTL) samples of a localization model, found by pruning (Jaiswal et al., WACV
//! 2023, after Hooker et al.'s pruning-identified exemplars): a sample is HTL when the model's
//! box and the box of the same model with its smallest weights pruned disagree (IoU below a
//! threshold). As in Hooker et al., ground truth plays no part. `medkd prune` finds them over a
//! population of trained runs; the localize method weighs them up (`[method.htl]`), from that
//! file or refreshed from the model being trained.

use std::path::Path;

use burn::prelude::*;
use medkd_data::{ImageDataset, Loader};
use medkd_eval::box_iou;
use medkd_models::{Model, Pruned, prune_global};

use crate::TrainError;
use crate::evaluate::{BoxPredictions, BoxSource, predict_boxes, submission_id};

/// `model` pruned at `sparsity` ([`prune_global`]) and the boxes it predicts on `loader`.
pub fn pruned_boxes(
    model: &Model,
    sparsity: f64,
    loader: &Loader,
    source: BoxSource,
    device: &Device,
) -> Result<(Pruned, BoxPredictions), TrainError> {
    let (pruned, report) = prune_global(model.valid(), sparsity)?;
    Ok((report, predict_boxes(&pruned, loader, source, device)?))
}

/// Per sample, the IoU of the dense and the pruned model's boxes.
pub fn agreement(dense: &BoxPredictions, pruned: &BoxPredictions) -> Vec<f64> {
    dense.predicted.iter().zip(&pruned.predicted).map(|(d, p)| box_iou(*d, *p)).collect()
}

/// The samples of `loader` on which `model` and `model` pruned at `sparsity` disagree: box IoU
/// below `threshold` (boxes from `source`: a weakly supervised classifier's pruned copy
/// disagrees when its activation map moves).
pub fn find_htl(
    model: &Model,
    sparsity: f64,
    threshold: f64,
    loader: &Loader,
    source: BoxSource,
    device: &Device,
) -> Result<Vec<bool>, TrainError> {
    let dense = predict_boxes(model, loader, source, device)?;
    let (_, pruned) = pruned_boxes(model, sparsity, loader, source, device)?;
    Ok(agreement(&dense, &pruned).iter().map(|&iou| iou < threshold).collect())
}

/// The `htl` column (1 or 0) of `medkd prune`'s `htl.csv` for every sample of `dataset`, matched
/// by the `image` column (the sample id without its file extension). Every sample must be
/// listed; extra rows (other splits) are ignored.
pub fn read_htl_file(path: &Path, dataset: &dyn ImageDataset) -> Result<Vec<bool>, TrainError> {
    let error = |message: String| TrainError::Config(format!("`method.htl.file` {}: {message}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(e.to_string()))?;
    let headers = reader.headers().map_err(|e| error(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| error(format!("has no `{name}` column")));
    let (image, htl) = (column("image")?, column("htl")?);
    let mut flags = std::collections::HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| error(e.to_string()))?;
        let flag = match &record[htl] {
            "1" => true,
            "0" => false,
            other => return Err(error(format!("row {}: htl = `{other}`, expected 1 or 0", row + 2))),
        };
        flags.insert(record[image].to_string(), flag);
    }
    (0..dataset.len())
        .map(|i| {
            let id = dataset.id(i);
            flags.get(submission_id(&id)).copied().ok_or_else(|| error(format!("does not list training image `{id}`")))
        })
        .collect()
}
