//! Learning rate as a pure function of training progress, plus the one piece of state a
//! schedule needs across epochs (the plateau scale), so resume reproduces it exactly.

use serde::{Deserialize, Serialize};

use crate::config::ScheduleConfig;

/// Tracks the best value of a metric and how many epochs passed without improving it;
/// used for best-checkpoint selection, early stopping and the plateau schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImprovementTracker {
    pub higher_is_better: bool,
    pub min_delta: f64,
    pub best: Option<f64>,
    pub best_epoch: Option<usize>,
    pub stale_epochs: usize,
}

impl ImprovementTracker {
    pub fn new(higher_is_better: bool, min_delta: f64) -> Self {
        ImprovementTracker { higher_is_better, min_delta, best: None, best_epoch: None, stale_epochs: 0 }
    }

    /// Records an epoch's value; true when it improves on the best by more than `min_delta`.
    /// A NaN metric (e.g. AUC undefined on a one-class split) never counts as an improvement.
    pub fn observe(&mut self, epoch: usize, value: f64) -> bool {
        let improved = !value.is_nan()
            && match self.best {
                None => true,
                Some(best) if self.higher_is_better => value > best + self.min_delta,
                Some(best) => value < best - self.min_delta,
            };
        if improved {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.stale_epochs = 0;
        } else {
            self.stale_epochs += 1;
        }
        improved
    }
}

/// The schedule's cross-epoch state: the plateau rule's running scale and its own tracker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub plateau_scale: f64,
    pub plateau_tracker: ImprovementTracker,
}

pub struct LrSchedule {
    base_lr: f64,
    epochs: usize,
    warmup_epochs: f64,
    kind: ScheduleConfig,
}

impl LrSchedule {
    pub fn new(base_lr: f64, epochs: usize, warmup_epochs: f64, kind: ScheduleConfig) -> Self {
        LrSchedule { base_lr, epochs, warmup_epochs, kind }
    }

    pub fn initial_state(&self, higher_is_better: bool) -> ScheduleState {
        ScheduleState { plateau_scale: 1.0, plateau_tracker: ImprovementTracker::new(higher_is_better, 0.0) }
    }

    /// Learning rate for step `step` (0-based) of `steps_per_epoch` in `epoch` (0-based).
    pub fn lr(&self, epoch: usize, step: usize, steps_per_epoch: usize, state: &ScheduleState) -> f64 {
        let steps = steps_per_epoch.max(1) as f64;
        let done_after_step = epoch as f64 + (step + 1) as f64 / steps;
        if done_after_step <= self.warmup_epochs {
            return self.base_lr * done_after_step / self.warmup_epochs;
        }
        let factor = match &self.kind {
            ScheduleConfig::Constant {} => 1.0,
            ScheduleConfig::Step { step_size, gamma } => gamma.powi((epoch / step_size) as i32),
            ScheduleConfig::MultiStep { milestones, gamma } => gamma.powi(milestones.iter().filter(|&&m| m <= epoch).count() as i32),
            ScheduleConfig::Cosine { min_lr } => {
                let start = epoch as f64 + step as f64 / steps;
                let span = self.epochs as f64 - self.warmup_epochs;
                let progress = ((start - self.warmup_epochs) / span).clamp(0.0, 1.0);
                let min_factor = min_lr / self.base_lr;
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleConfig::Plateau { min_lr, .. } => state.plateau_scale.max(min_lr / self.base_lr),
        };
        self.base_lr * factor
    }

    /// End-of-epoch update of the plateau rule (torch's ReduceLROnPlateau, cooldown 0).
    pub fn end_epoch(&self, epoch: usize, metric: f64, state: &mut ScheduleState) {
        if let ScheduleConfig::Plateau { factor, patience, .. } = &self.kind {
            state.plateau_tracker.observe(epoch, metric);
            if state.plateau_tracker.stale_epochs > *patience {
                state.plateau_scale *= factor;
                state.plateau_tracker.stale_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr_at(schedule: &LrSchedule, epoch: usize, step: usize) -> f64 {
        schedule.lr(epoch, step, 10, &schedule.initial_state(true))
    }

    #[test]
    fn warmup_rises_linearly_to_the_base_rate() {
        let schedule = LrSchedule::new(0.1, 10, 2.0, ScheduleConfig::Constant {});
        assert!((lr_at(&schedule, 0, 0) - 0.1 * 0.1 / 2.0).abs() < 1e-12);
        assert!((lr_at(&schedule, 0, 9) - 0.05).abs() < 1e-12);
        assert!((lr_at(&schedule, 1, 9) - 0.1).abs() < 1e-12);
        assert_eq!(lr_at(&schedule, 5, 3), 0.1);
    }

    #[test]
    fn step_and_multistep_decay_at_epoch_boundaries() {
        let step = LrSchedule::new(1.0, 10, 0.0, ScheduleConfig::Step { step_size: 3, gamma: 0.5 });
        assert_eq!([0, 2, 3, 6].map(|e| lr_at(&step, e, 0)), [1.0, 1.0, 0.5, 0.25]);
        let multi = LrSchedule::new(1.0, 10, 0.0, ScheduleConfig::MultiStep { milestones: vec![2, 5], gamma: 0.1 });
        let lrs = [1, 2, 5].map(|e| lr_at(&multi, e, 0));
        assert_eq!(lrs[0], 1.0);
        assert!((lrs[1] - 0.1).abs() < 1e-12 && (lrs[2] - 0.01).abs() < 1e-12);
    }

    #[test]
    fn cosine_goes_from_base_to_min_after_warmup() {
        let schedule = LrSchedule::new(1.0, 11, 1.0, ScheduleConfig::Cosine { min_lr: 0.1 });
        assert!((lr_at(&schedule, 1, 0) - 1.0).abs() < 1e-12);
        assert!((lr_at(&schedule, 6, 0) - 0.55).abs() < 1e-12, "halfway is the mean of base and min");
        assert!(lr_at(&schedule, 10, 9) > 0.1 && lr_at(&schedule, 10, 9) < 0.11);
    }

    #[test]
    fn plateau_cuts_after_patience_stale_epochs_and_respects_min_lr() {
        let schedule = LrSchedule::new(1.0, 50, 0.0, ScheduleConfig::Plateau { factor: 0.5, patience: 2, min_lr: 0.2 });
        let mut state = schedule.initial_state(false);
        for (epoch, loss) in [1.0, 0.9, 0.95, 0.95, 0.95].into_iter().enumerate() {
            schedule.end_epoch(epoch, loss, &mut state);
        }
        assert_eq!(state.plateau_scale, 0.5, "3 stale epochs > patience 2 → one cut");
        for epoch in 5..20 {
            schedule.end_epoch(epoch, 0.95, &mut state);
        }
        assert_eq!(schedule.lr(20, 0, 10, &state), 0.2, "never below min_lr");
    }

    #[test]
    fn tracker_handles_direction_min_delta_and_nan() {
        let mut higher = ImprovementTracker::new(true, 0.01);
        assert!(higher.observe(0, 0.5));
        assert!(!higher.observe(1, 0.505), "within min_delta");
        assert!(!higher.observe(2, f64::NAN));
        assert!(higher.observe(3, 0.6));
        assert_eq!((higher.best, higher.best_epoch, higher.stale_epochs), (Some(0.6), Some(3), 0));
        let mut lower = ImprovementTracker::new(false, 0.0);
        assert!(lower.observe(0, 1.0) && lower.observe(1, 0.5) && !lower.observe(2, 0.7));
    }
}
