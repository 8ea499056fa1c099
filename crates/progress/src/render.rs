//! Turning a snapshot into text: a bar, embed fields (no Discord types here), a terminal line.

use std::time::Duration;

use crate::tracker::{Phase, Snapshot};

/// Cells in the text bar.
pub const BAR_CELLS: usize = 20;
const FILLED: char = '█';
const EMPTY: char = '░';

/// `██████░░░░░░░░░░░░░░` for 30 %.
pub fn bar(percent: f64) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * BAR_CELLS as f64).floor() as usize;
    let mut s = String::with_capacity(BAR_CELLS * 3);
    s.extend(std::iter::repeat_n(FILLED, filled));
    s.extend(std::iter::repeat_n(EMPTY, BAR_CELLS - filled));
    s
}

/// `1h 02m`, `3m 05s`, `42s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// The parts of a progress embed; the bot maps it onto Discord's embed type.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedView {
    pub title: String,
    /// The bar with its percentage, or the error.
    pub description: String,
    pub fields: Vec<(String, String)>,
    /// Show the latest preview as the thumbnail.
    pub show_preview: bool,
}

impl EmbedView {
    pub fn from_snapshot(s: &Snapshot) -> EmbedView {
        let title = match (s.phase, s.queue_position, &s.note) {
            (Phase::Queued, _, Some(_)) => "Backend lost: running it again".to_string(),
            (Phase::Queued, Some(0), None) => "Queued: next up".to_string(),
            (Phase::Queued, Some(p), None) => format!("Queued: {} ahead of you", p),
            (phase, _, _) => phase.label().to_string(),
        };
        let description = match (&s.error, s.phase) {
            (Some(e), Phase::Failed) => e.clone(),
            _ => format!("`{}` {:.0}%", bar(s.percent), s.percent.floor()),
        };
        let mut fields = Vec::new();
        if let Some(note) = s.note.as_ref().filter(|_| s.phase == Phase::Queued) {
            fields.push(("Why".to_string(), note.clone()));
        }
        if let Some(node) = &s.node {
            fields.push(("Node".to_string(), node.clone()));
        }
        if let Some((x, y)) = s.step {
            fields.push(("Step".to_string(), format!("{x}/{y}")));
        }
        if let Some(eta) = s.eta.filter(|_| !s.phase.is_final()) {
            fields.push(("ETA".to_string(), duration(eta)));
        }
        fields.push(("Elapsed".to_string(), duration(s.elapsed)));
        EmbedView {
            title,
            description,
            fields,
            show_preview: s.preview.is_some() && !s.phase.is_final(),
        }
    }
}

/// One line for a terminal: `Sampling  ██████░░░░░░░░░░░░░░  30%  KSampler 6/20  ETA 14s  3s`.
pub fn terminal_line(s: &Snapshot) -> String {
    let mut line = format!(
        "{:<14} {} {:>3.0}%",
        s.phase.label(),
        bar(s.percent),
        s.percent.floor()
    );
    if let Some(p) = s.queue_position.filter(|_| s.phase == Phase::Queued) {
        line.push_str(&format!("  position {}", p + 1));
    }
    if let Some(node) = &s.node {
        line.push_str("  ");
        line.push_str(node);
    }
    if let Some((x, y)) = s.step {
        line.push_str(&format!(" {x}/{y}"));
    }
    if let Some(eta) = s.eta.filter(|_| !s.phase.is_final()) {
        line.push_str(&format!("  ETA {}", duration(eta)));
    }
    line.push_str(&format!("  {}", duration(s.elapsed)));
    if let Some(e) = &s.error {
        line.push_str(&format!("  {e}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            phase: Phase::Sampling,
            queue_position: None,
            node: Some("KSampler".into()),
            step: Some((6, 20)),
            percent: 30.0,
            eta: Some(Duration::from_secs(14)),
            elapsed: Duration::from_secs(3),
            preview: None,
            error: None,
            note: None,
        }
    }

    #[test]
    fn bar_has_twenty_cells() {
        assert_eq!(bar(0.0), "░".repeat(20));
        assert_eq!(bar(30.0), format!("{}{}", "█".repeat(6), "░".repeat(14)));
        assert_eq!(bar(100.0), "█".repeat(20));
        assert_eq!(bar(250.0).chars().count(), BAR_CELLS);
        assert_eq!(bar(-3.0).chars().count(), BAR_CELLS);
    }

    #[test]
    fn embed_and_terminal() {
        let e = EmbedView::from_snapshot(&snap());
        assert_eq!(e.title, "Sampling");
        assert_eq!(e.description, format!("`{}` 30%", bar(30.0)));
        assert_eq!(
            e.fields,
            vec![
                ("Node".into(), "KSampler".into()),
                ("Step".into(), "6/20".into()),
                ("ETA".into(), "14s".into()),
                ("Elapsed".into(), "3s".into()),
            ]
        );
        assert_eq!(
            terminal_line(&snap()),
            format!(
                "Sampling       {}  30%  KSampler 6/20  ETA 14s  3s",
                bar(30.0)
            )
        );
        let mut q = snap();
        q.phase = Phase::Queued;
        q.queue_position = Some(2);
        assert_eq!(EmbedView::from_snapshot(&q).title, "Queued: 2 ahead of you");
        let mut f = snap();
        f.phase = Phase::Failed;
        f.error = Some("node 3 (KSampler): out of memory".into());
        let e = EmbedView::from_snapshot(&f);
        assert_eq!(e.description, "node 3 (KSampler): out of memory");
        assert!(!e.fields.iter().any(|(k, _)| k == "ETA"));
        assert_eq!(duration(Duration::from_secs(3725)), "1h 02m");
        assert_eq!(duration(Duration::from_secs(185)), "3m 05s");
    }
}
