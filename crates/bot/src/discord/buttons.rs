//! The buttons of a job's message and what their custom ids carry: an action, a job and,
//! for one image of a batch, its number. Everything else comes from the journal, so buttons
//! keep working after a restart and a chain of follow-ups can go on indefinitely.

use generators::{Derivation, Direction, JobId, Offers, Reframe, Strength};
use poise::serenity_prelude as serenity;
use serenity::{ButtonStyle, CreateActionRow, CreateButton};

/// Prefix of every custom_id this bot makes.
const ID_PREFIX: &str = "cc";
/// Marks the submit of a remix form: the action, with the prompt typed into the form.
const FORM_MARK: &str = "form";
/// Discord's limits: rows per message, buttons per row.
pub const MAX_ROWS: usize = 5;
pub const MAX_BUTTONS_PER_ROW: usize = 5;
/// Images a grid's U and V buttons can name.
pub const MAX_GRID_IMAGES: usize = 4;

/// What a button (or a form) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// U1–U4: one image of a batch alone, with its own buttons.
    Pick,
    Upscale,
    UpscaleCreative,
    VarySubtle,
    VaryStrong,
    ZoomOut2,
    ZoomOut15,
    Square,
    Pan(Direction),
    Reroll,
    Edit,
    Animate,
    Info,
    Delete,
    Cancel,
    /// The submit of the Edit form.
    EditSubmit,
    /// A failed job again, exactly as it was (same values and seed).
    Retry,
    /// The submit of the "Vary" message command's form; the "job" is the message's id.
    VaryMessage,
    /// 1–4 under a describe result: generate with that prompt.
    Described,
}

impl Action {
    const ALL: [Action; 22] = [
        Action::Pick,
        Action::Upscale,
        Action::UpscaleCreative,
        Action::VarySubtle,
        Action::VaryStrong,
        Action::ZoomOut2,
        Action::ZoomOut15,
        Action::Square,
        Action::Pan(Direction::Left),
        Action::Pan(Direction::Right),
        Action::Pan(Direction::Up),
        Action::Pan(Direction::Down),
        Action::Reroll,
        Action::Edit,
        Action::Animate,
        Action::Info,
        Action::Delete,
        Action::Cancel,
        Action::EditSubmit,
        Action::Retry,
        Action::VaryMessage,
        Action::Described,
    ];

    fn code(self) -> &'static str {
        match self {
            Action::Pick => "u",
            Action::Upscale => "up",
            Action::UpscaleCreative => "upc",
            // "vary" was the one Vary button before there were two: old messages keep working.
            Action::VarySubtle => "vary",
            Action::VaryStrong => "vx",
            Action::ZoomOut2 => "z2",
            Action::ZoomOut15 => "z15",
            Action::Square => "sq",
            Action::Pan(Direction::Left) => "pl",
            Action::Pan(Direction::Right) => "pr",
            Action::Pan(Direction::Up) => "pu",
            Action::Pan(Direction::Down) => "pd",
            Action::Reroll => "reroll",
            Action::Edit => "edit",
            Action::Animate => "anim",
            Action::Info => "info",
            Action::Delete => "del",
            Action::Cancel => "cancel",
            Action::EditSubmit => "editm",
            Action::Retry => "retry",
            Action::VaryMessage => "mv",
            Action::Described => "dp",
        }
    }

    /// The follow-up job this action starts, if it starts one.
    pub fn derivation(self) -> Option<Derivation> {
        Some(match self {
            Action::Upscale => Derivation::Upscale,
            Action::UpscaleCreative => Derivation::UpscaleCreative,
            Action::VarySubtle => Derivation::Vary(Strength::Subtle),
            Action::VaryStrong => Derivation::Vary(Strength::Strong),
            Action::ZoomOut2 => Derivation::Reframe(Reframe::ZoomOut2),
            Action::ZoomOut15 => Derivation::Reframe(Reframe::ZoomOut15),
            Action::Square => Derivation::Reframe(Reframe::Square),
            Action::Pan(d) => Derivation::Reframe(Reframe::Pan(d)),
            Action::Reroll => Derivation::Reroll,
            Action::Animate => Derivation::Animate,
            Action::Retry => Derivation::Retry,
            Action::EditSubmit => Derivation::Edit,
            Action::Described => Derivation::Described,
            Action::Pick
            | Action::VaryMessage
            | Action::Edit
            | Action::Info
            | Action::Delete
            | Action::Cancel => return None,
        })
    }

    /// Whether the member's remix setting opens the prompt form before this follow-up: the
    /// ones that draw (an upscale by model and a retry do not).
    pub fn remixable(self) -> bool {
        matches!(
            self.derivation(),
            Some(
                Derivation::Reroll
                    | Derivation::UpscaleCreative
                    | Derivation::Vary(_)
                    | Derivation::Reframe(_)
                    | Derivation::Animate
            )
        )
    }
}

/// A pressed button (or a submitted form): what, on which job, on which image (0-based), and
/// whether it is a remix form's submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Press {
    pub action: Action,
    pub job: JobId,
    pub image: usize,
    pub form: bool,
}

impl Press {
    pub fn new(action: Action, job: &JobId) -> Press {
        Press {
            action,
            job: job.clone(),
            image: 0,
            form: false,
        }
    }

    pub fn on_image(self, image: usize) -> Press {
        Press { image, ..self }
    }

    pub fn as_form(self) -> Press {
        Press { form: true, ..self }
    }

    /// `cc[:form]:<action>:<job>[:<image number>]`, at most 100 characters.
    pub fn custom_id(&self) -> String {
        let mut id = String::from(ID_PREFIX);
        if self.form {
            id.push(':');
            id.push_str(FORM_MARK);
        }
        id.push_str(&format!(":{}:{}", self.action.code(), self.job.as_str()));
        if self.image > 0 || matches!(self.action, Action::Pick | Action::Described) {
            id.push_str(&format!(":{}", self.image + 1));
        }
        id
    }

    /// One of our custom ids, or `None` for anything else.
    pub fn parse(id: &str) -> Option<Press> {
        let mut parts = id.split(':').peekable();
        if parts.next()? != ID_PREFIX {
            return None;
        }
        let form = parts.next_if_eq(&FORM_MARK).is_some();
        let code = parts.next()?;
        let job = parts.next()?;
        let image = match parts.next() {
            None => 0,
            Some(n) => match n.parse::<usize>() {
                Ok(n @ 1..=MAX_GRID_IMAGES) => n - 1,
                _ => return None,
            },
        };
        if parts.next().is_some()
            || job.is_empty()
            || job.len() > 64
            || !job.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return None;
        }
        let action = Action::ALL.into_iter().find(|a| a.code() == code)?;
        Some(Press {
            action,
            job: JobId(job.to_string()),
            image,
            form,
        })
    }
}

fn button(press: Press, label: &str, style: ButtonStyle) -> CreateButton {
    CreateButton::new(press.custom_id())
        .label(label)
        .style(style)
}

/// The Cancel button shown while a job waits or runs.
pub fn cancel_row(job: &JobId) -> Vec<CreateActionRow> {
    let b = button(
        Press::new(Action::Cancel, job),
        "Cancel",
        ButtonStyle::Danger,
    );
    vec![CreateActionRow::Buttons(vec![b])]
}

/// The button under a failed job: run it again as it was.
pub fn retry_row(job: &JobId) -> Vec<CreateActionRow> {
    let b = button(
        Press::new(Action::Retry, job),
        "Retry",
        ButtonStyle::Primary,
    );
    vec![CreateActionRow::Buttons(vec![b])]
}

/// The buttons under a result. A batch of 2–4 images shown as a grid gets U1–U4 (one image
/// alone), 🔄 (the job again) and V1–V4 (a strong variation of one image); a single image
/// (or one picked from a grid, `image`) gets every follow-up its workflows allow. Never more
/// than Discord's 5 rows of 5.
pub fn result_rows(job: &JobId, offers: Offers, image: Option<usize>) -> Vec<CreateActionRow> {
    let press = |a: Action| Press::new(a, job).on_image(image.unwrap_or(0));
    let secondary = ButtonStyle::Secondary;
    let mut rows: Vec<Vec<CreateButton>> = Vec::new();
    let grid = image.is_none() && (2..=MAX_GRID_IMAGES).contains(&offers.images);
    if offers.prompts > 0 {
        // A describe result: one button per prompt, then the job again, Info and Delete.
        rows.push(
            (0..offers.prompts.min(MAX_GRID_IMAGES))
                .map(|i| {
                    let p = Press::new(Action::Described, job).on_image(i);
                    button(p, &(i + 1).to_string(), ButtonStyle::Primary)
                })
                .collect(),
        );
        rows.push(vec![
            button(press(Action::Reroll), "🔄 Reroll", secondary),
            button(press(Action::Info), "Info", secondary),
            button(press(Action::Delete), "Delete", ButtonStyle::Danger),
        ]);
    } else if grid {
        let mut picks: Vec<CreateButton> = (0..offers.images)
            .map(|i| {
                let p = Press::new(Action::Pick, job).on_image(i);
                button(p, &format!("U{}", i + 1), secondary)
            })
            .collect();
        picks.push(button(press(Action::Reroll), "🔄", secondary));
        rows.push(picks);
        if offers.vary {
            rows.push(
                (0..offers.images)
                    .map(|i| {
                        let p = Press::new(Action::VaryStrong, job).on_image(i);
                        button(p, &format!("V{}", i + 1), secondary)
                    })
                    .collect(),
            );
        }
        let mut last = Vec::new();
        if offers.edit {
            last.push(button(press(Action::Edit), "Edit", secondary));
        }
        last.push(button(press(Action::Info), "Info", secondary));
        last.push(button(press(Action::Delete), "Delete", ButtonStyle::Danger));
        rows.push(last);
    } else {
        let mut first = Vec::new();
        if offers.vary {
            first.push(button(
                press(Action::VarySubtle),
                "Vary (Subtle)",
                secondary,
            ));
            first.push(button(
                press(Action::VaryStrong),
                "Vary (Strong)",
                secondary,
            ));
        }
        if offers.upscale {
            let label = if offers.upscale_creative {
                "Upscale (Subtle)"
            } else {
                "Upscale"
            };
            first.push(button(press(Action::Upscale), label, ButtonStyle::Primary));
        }
        if offers.upscale_creative {
            let b = button(
                press(Action::UpscaleCreative),
                "Upscale (Creative)",
                ButtonStyle::Primary,
            );
            first.push(b);
        }
        rows.push(first);
        if offers.reframe {
            let mut zoom = vec![
                button(press(Action::ZoomOut2), "Zoom Out 2×", secondary),
                button(press(Action::ZoomOut15), "Zoom Out 1.5×", secondary),
            ];
            if offers.square {
                zoom.push(button(press(Action::Square), "Make Square", secondary));
            }
            rows.push(zoom);
            rows.push(
                [
                    (Direction::Left, "⬅️"),
                    (Direction::Right, "➡️"),
                    (Direction::Up, "⬆️"),
                    (Direction::Down, "⬇️"),
                ]
                .into_iter()
                .map(|(d, label)| button(press(Action::Pan(d)), label, secondary))
                .collect(),
            );
        }
        let mut last = vec![button(press(Action::Reroll), "🔄 Reroll", secondary)];
        if offers.edit {
            last.push(button(press(Action::Edit), "Edit", secondary));
        }
        if offers.animate {
            last.push(button(press(Action::Animate), "Animate", secondary));
        }
        last.push(button(press(Action::Info), "Info", secondary));
        last.push(button(press(Action::Delete), "Delete", ButtonStyle::Danger));
        rows.push(last);
    }
    rows.retain(|r| !r.is_empty());
    // The layout above stays within the limits; this keeps a future button from breaking a
    // result (Discord refuses the whole message).
    rows.truncate(MAX_ROWS);
    rows.into_iter()
        .map(|mut r| {
            r.truncate(MAX_BUTTONS_PER_ROW);
            CreateActionRow::Buttons(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn job() -> JobId {
        JobId("0123456789abcdef".into())
    }

    #[test]
    fn custom_ids_round_trip_and_reject_strangers() {
        let job = job();
        for a in Action::ALL {
            for image in [0, 1, 3] {
                for form in [false, true] {
                    let mut p = Press::new(a, &job).on_image(image);
                    p.form = form;
                    let id = p.custom_id();
                    assert!(id.chars().count() <= 100, "{id}");
                    assert_eq!(Press::parse(&id), Some(p), "{id}");
                }
            }
        }
        assert_eq!(
            Press::new(Action::Pick, &job).on_image(1).custom_id(),
            "cc:u:0123456789abcdef:2"
        );
        // Buttons made before images were numbered.
        assert_eq!(
            Press::parse("cc:vary:0123456789abcdef"),
            Some(Press::new(Action::VarySubtle, &job))
        );
        for bad in [
            "",
            "cc",
            "cc:up",
            "cc:zzz:0123",
            "xx:up:0123",
            "cc:up:01 23",
            "cc:up:a:b",
            "cc:up:a:0",
            "cc:up:a:5",
            "cc:up:a:1:x",
            "cc:form",
        ] {
            assert_eq!(Press::parse(bad), None, "{bad}");
        }
    }

    fn labels(rows: Vec<CreateActionRow>) -> Vec<Vec<(String, String)>> {
        let rows = serde_json::to_value(rows).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["components"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| {
                        let s = |k: &str| b[k].as_str().map(str::to_string).unwrap_or_default();
                        (s("label"), s("custom_id"))
                    })
                    .collect()
            })
            .collect()
    }

    const ALL: Offers = Offers {
        prompts: 0,
        images: 1,
        upscale: true,
        upscale_creative: true,
        vary: true,
        edit: true,
        animate: true,
        reframe: true,
        square: true,
    };

    #[test]
    fn a_grid_has_a_pick_and_a_variation_per_image() {
        let rows = labels(result_rows(&job(), Offers { images: 4, ..ALL }, None));
        let names: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(|(l, _)| l.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["U1", "U2", "U3", "U4", "🔄"],
                vec!["V1", "V2", "V3", "V4"],
                vec!["Edit", "Info", "Delete"],
            ]
        );
        assert_eq!(rows[0][1].1, "cc:u:0123456789abcdef:2");
        assert_eq!(rows[1][2].1, "cc:vx:0123456789abcdef:3");
        let two = labels(result_rows(
            &job(),
            Offers {
                images: 2,
                vary: false,
                ..ALL
            },
            None,
        ));
        assert_eq!(two.len(), 2, "no V row without a variation workflow");
        assert_eq!(two[0].len(), 3);
    }

    #[test]
    fn one_image_gets_every_follow_up_within_discords_limits() {
        let rows = labels(result_rows(&job(), ALL, Some(2)));
        let names: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(|(l, _)| l.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec![
                    "Vary (Subtle)",
                    "Vary (Strong)",
                    "Upscale (Subtle)",
                    "Upscale (Creative)"
                ],
                vec!["Zoom Out 2×", "Zoom Out 1.5×", "Make Square"],
                vec!["⬅️", "➡️", "⬆️", "⬇️"],
                vec!["🔄 Reroll", "Edit", "Animate", "Info", "Delete"],
            ]
        );
        assert!(rows.iter().flatten().all(|(_, id)| {
            let p = Press::parse(id).unwrap();
            p.image == 2 && p.job == job()
        }));
        // Only what the workflows allow: no outpaint, no creative upscale, no img2img.
        let bare = Offers {
            images: 1,
            upscale: true,
            edit: true,
            ..Offers::default()
        };
        let names: Vec<String> = labels(result_rows(&job(), bare, None))
            .into_iter()
            .flatten()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(names, ["Upscale", "🔄 Reroll", "Edit", "Info", "Delete"]);
        for offers in [ALL, Offers { images: 4, ..ALL }, Offers::default()] {
            let rows = serde_json::to_value(result_rows(&job(), offers, None)).unwrap();
            let rows = rows.as_array().unwrap();
            assert!(rows.len() <= MAX_ROWS);
            assert!(rows.iter().all(|r| {
                let n = r["components"].as_array().map_or(0, Vec::len);
                (1..=MAX_BUTTONS_PER_ROW).contains(&n)
            }));
            assert!(rows
                .iter()
                .all(|r| r["components"][0]["custom_id"] != Value::Null));
        }
    }

    #[test]
    fn remix_opens_the_form_only_for_follow_ups_that_draw() {
        assert!(Action::VaryStrong.remixable());
        assert!(Action::Pan(Direction::Up).remixable());
        assert!(Action::Reroll.remixable());
        assert!(!Action::Upscale.remixable());
        assert!(!Action::Pick.remixable());
        assert!(!Action::Retry.remixable());
    }
}
