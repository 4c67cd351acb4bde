//! Localization metrics for one box per image (lesion localization): normalized `[x0, y0, x1, y1]`
//! boxes, predicted against true. Checked against torchvision's `box_iou`
//! (`tools/golden/box_metrics_golden.py`).

use serde::{Deserialize, Serialize};

use crate::{EvalError, Metric};

/// Intersection over union, as torchvision's `box_iou` for valid boxes. A box with no area (x1 <=
/// x0 or y1 <= y0, as an untrained head can predict) overlaps nothing: IoU 0 (torchvision would
/// give it a negative area).
pub fn box_iou(a: [f32; 4], b: [f32; 4]) -> f64 {
    let [a, b] = [a, b].map(|bx| bx.map(f64::from));
    let area = |bx: [f64; 4]| (bx[2] - bx[0]).max(0.0) * (bx[3] - bx[1]).max(0.0);
    let width = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let height = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = width * height;
    let union = area(a) + area(b) - intersection;
    if union > 0.0 { intersection / union } else { 0.0 }
}

/// Mean IoU and the share of images localized at IoU >= 0.5 and >= 0.75.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxReport {
    pub n: usize,
    pub mean_iou: f64,
    pub acc_at_50: f64,
    pub acc_at_75: f64,
    /// Per image, in input order.
    pub iou: Vec<f64>,
}

impl BoxReport {
    /// A localization metric; `None` for the classification ones.
    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::MeanIou => Some(self.mean_iou),
            Metric::AccAt50 => Some(self.acc_at_50),
            Metric::AccAt75 => Some(self.acc_at_75),
            _ => None,
        }
    }

    pub fn table(&self) -> String {
        format!(
            "samples     {}\nmean IoU    {:.4}\nIoU >= 0.5  {:.4}\nIoU >= 0.75 {:.4}",
            self.n, self.mean_iou, self.acc_at_50, self.acc_at_75
        )
    }
}

pub fn evaluate_boxes(predicted: &[[f32; 4]], truth: &[[f32; 4]]) -> Result<BoxReport, EvalError> {
    if truth.is_empty() {
        return Err(EvalError::Empty);
    }
    if predicted.len() != truth.len() {
        return Err(EvalError::LengthMismatch {
            what: "predicted boxes",
            n: truth.len(),
            k: 1,
            expected: truth.len(),
            actual: predicted.len(),
        });
    }
    if let Some(index) = predicted.iter().chain(truth).flatten().position(|v| !v.is_finite()) {
        let which = if index < 4 * predicted.len() { "predicted" } else { "true" };
        let sample = (index / 4) % truth.len();
        return Err(EvalError::NonFiniteBox { which, sample });
    }
    let iou: Vec<f64> = predicted.iter().zip(truth).map(|(p, t)| box_iou(*p, *t)).collect();
    let n = iou.len();
    let share = |threshold: f64| iou.iter().filter(|&&v| v >= threshold).count() as f64 / n as f64;
    Ok(BoxReport { n, mean_iou: iou.iter().sum::<f64>() / n as f64, acc_at_50: share(0.5), acc_at_75: share(0.75), iou })
}
