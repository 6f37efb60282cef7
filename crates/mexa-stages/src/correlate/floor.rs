//! The floor diagnosis of a correlation: how many of its points sit near chance on each axis
//! (alignment, task score, the commonest answer's accuracy), whether most do, and the note
//! that says what that means and what may help.
use super::*;

/// Above this mean cosine of non-parallel pairs, embeddings share one large direction
/// (anisotropy); isotropic or centred embeddings give about 0.
pub const ANISOTROPY_HIGH: f64 = 0.5;

/// How many of a correlation's points sit near chance on each axis, and what that means.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    /// Points whose alignment is near chance (-1: no chance model, the metric is not μ).
    pub alignment: i32,
    /// Points whose task score is near chance (-1: the task's chance or items are unknown).
    pub task: i32,
    /// The task's chance accuracy (NaN: unknown).
    pub task_chance: f64,
    /// Points whose task score does not beat always giving the commonest answer (-1: unknown),
    /// and that answer's accuracy (NaN: unknown).
    pub task_below_majority: i32,
    pub task_majority: f64,
    /// Mean cosine of non-parallel pairs over the points' languages, layers and sentences (NaN
    /// without an `instances` input).
    pub anisotropy: f64,
}

impl Floor {
    pub fn of(points: &[&PointRow], anisotropy: f64) -> Floor {
        let alignment = if points.iter().all(|p| p.metric == "mexa") {
            points.iter().filter(|p| p.alignment_near_chance).count() as i32
        } else {
            -1
        };
        let known = points.iter().all(|p| p.score_n > 0 && p.score_chance.is_finite());
        let task = if known { points.iter().filter(|p| p.score_near_chance).count() as i32 } else { -1 };
        let task_chance = points.first().map_or(f64::NAN, |p| p.score_chance);
        let majority_known = points.iter().all(|p| p.score_n > 0 && p.score_majority.is_finite());
        let task_below_majority =
            if majority_known { points.iter().filter(|p| p.score_below_majority).count() as i32 } else { -1 };
        let task_majority = points.first().map_or(f64::NAN, |p| p.score_majority);
        Floor { alignment, task, task_chance, task_below_majority, task_majority, anisotropy }
    }

    /// Most points (more than half of `n`) are near chance on either axis, or their task scores
    /// do not beat always giving the commonest answer.
    pub fn flagged(&self, n: usize) -> bool {
        [self.alignment, self.task, self.task_below_majority].iter().any(|&k| 2 * k.max(0) as usize > n)
    }

    /// The diagnosis in words ("" when not flagged), with the suggestion to centre when the
    /// alignment axis is at the floor and the embeddings are anisotropic.
    pub fn note(&self, n: usize) -> String {
        if !self.flagged(n) {
            return String::new();
        }
        let mut parts = Vec::new();
        if 2 * self.alignment.max(0) as usize > n {
            let mut s = format!("alignment near chance for {} of {n} languages", self.alignment);
            if self.anisotropy >= ANISOTROPY_HIGH {
                s += &format!(
                    " (mean cosine of non-parallel pairs {:.2}: anisotropy; try `centering: true`)",
                    self.anisotropy
                );
            }
            parts.push(s);
        }
        if 2 * self.task.max(0) as usize > n {
            parts.push(format!(
                "task score near its chance level ({:.3}) for {} of {n} languages",
                self.task_chance, self.task
            ));
        }
        if 2 * self.task_below_majority.max(0) as usize > n {
            parts.push(format!(
                "task score no better than always answering the commonest label of the scored items ({:.3}) for {} of {n} languages",
                self.task_majority, self.task_below_majority
            ));
        }
        format!("floor: {}; the correlation mostly contrasts those languages with the rest", parts.join("; "))
    }
}
