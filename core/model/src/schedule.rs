//! Key schedules (basic and multiple time windows) and named schedule templates.

use chrono::{NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::{
    common::ObjectId,
    firmware::FirmwareVersion,
    resource::{ObjectKind, Projection, Reference, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// A daily period from `from` to `to` (local time at the cylinder); `to` after `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DayPeriod {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "07:00"))]
    pub from: NaiveTime,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "18:30"))]
    pub to: NaiveTime,
}

/// Day of the week as used by schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Day {
    /// Minutes from Monday 00:00 to the start of this day.
    pub fn week_minute(self) -> u32 {
        (self as u32) * 24 * 60
    }

    pub fn from_weekday(w: Weekday) -> Self {
        match w {
            Weekday::Mon => Day::Monday,
            Weekday::Tue => Day::Tuesday,
            Weekday::Wed => Day::Wednesday,
            Weekday::Thu => Day::Thursday,
            Weekday::Fri => Day::Friday,
            Weekday::Sat => Day::Saturday,
            Weekday::Sun => Day::Sunday,
        }
    }
}

/// A window in the week, possibly spanning days (e.g. Friday 22:00 → Monday 06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    pub start_day: Day,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "22:00"))]
    pub start: NaiveTime,
    pub end_day: Day,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "06:00"))]
    pub end: NaiveTime,
}

/// Per-cylinder periods that replace the general schedule at one cylinder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CylinderPeriods {
    pub cylinder_id: ObjectId,
    pub windows: Vec<TimeWindow>,
}

/// When a quartz or dynamic key may open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// One period per weekday, for all cylinders (firmware 1.x, 3.x, 5.x and all multi-window firmware).
    Basic {
        /// Periods keyed by weekday; a missing day is closed.
        days: std::collections::BTreeMap<Day, DayPeriod>,
    },
    /// Many windows per week, spanning days, plus per-cylinder periods (firmware 2.x, 4.x, 6.x, ≥ 10).
    MultipleTimeWindows {
        windows: Vec<TimeWindow>,
        #[serde(default)]
        per_cylinder: Vec<CylinderPeriods>,
    },
}

/// Most windows in one multiple-time-window schedule (and per cylinder).
pub const MAX_WINDOWS: usize = 64;
/// Most cylinders with their own periods in one schedule.
pub const MAX_PER_CYLINDER: usize = 256;

impl Schedule {
    /// The whole week, the default even for "always active" keys.
    pub fn whole_week() -> Self {
        Schedule::MultipleTimeWindows {
            windows: vec![TimeWindow {
                start_day: Day::Monday,
                start: NaiveTime::MIN,
                end_day: Day::Sunday,
                end: NaiveTime::from_hms_opt(23, 59, 0).unwrap_or(NaiveTime::MIN),
            }],
            per_cylinder: Vec::new(),
        }
    }

    /// Whether key firmware `fw` can hold this schedule type.
    pub fn supported_by(&self, fw: &FirmwareVersion) -> bool {
        match self {
            Schedule::Basic { .. } => true,
            Schedule::MultipleTimeWindows { .. } => supports_multiple_windows(fw),
        }
    }

    pub fn validate(&self, prefix: &str) -> ValidationErrors {
        let mut e = ValidationErrors::new();
        match self {
            Schedule::Basic { days } => {
                for (d, p) in days {
                    if p.to <= p.from {
                        e.push(
                            format!("{prefix}.days.{}", day_name(*d)),
                            "'to' must be after 'from'",
                        );
                    }
                }
            }
            Schedule::MultipleTimeWindows {
                windows,
                per_cylinder,
            } => {
                check_windows(&mut e, &format!("{prefix}.windows"), windows);
                if per_cylinder.len() > MAX_PER_CYLINDER {
                    e.push(
                        format!("{prefix}.per_cylinder"),
                        format!("at most {MAX_PER_CYLINDER} cylinders"),
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for (i, pc) in per_cylinder.iter().enumerate() {
                    let f = format!("{prefix}.per_cylinder[{i}]");
                    if !seen.insert(pc.cylinder_id) {
                        e.push(format!("{f}.cylinder_id"), "cylinder listed twice");
                    }
                    check_windows(&mut e, &format!("{f}.windows"), &pc.windows);
                }
            }
        }
        e
    }

    /// Cylinders referenced by per-cylinder periods.
    pub fn references(&self, prefix: &str) -> Vec<Reference> {
        match self {
            Schedule::Basic { .. } => Vec::new(),
            Schedule::MultipleTimeWindows { per_cylinder, .. } => per_cylinder
                .iter()
                .enumerate()
                .map(|(i, pc)| {
                    Reference::new(
                        format!("{prefix}.per_cylinder[{i}].cylinder_id"),
                        ObjectKind::Cylinder,
                        pc.cylinder_id,
                        "schedule_cylinder",
                    )
                })
                .collect(),
        }
    }
}

/// Multiple time windows: key firmware 2.x, 4.x, 6.x or ≥ 10.
pub fn supports_multiple_windows(fw: &FirmwareVersion) -> bool {
    matches!(fw.major(), 2 | 4 | 6) || fw.major() >= 10
}

fn day_name(d: Day) -> String {
    serde_json::to_value(d)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn check_windows(e: &mut ValidationErrors, field: &str, windows: &[TimeWindow]) {
    if windows.len() > MAX_WINDOWS {
        e.push(
            field,
            format!("at most {MAX_WINDOWS} windows, got {}", windows.len()),
        );
    }
    for (i, w) in windows.iter().enumerate() {
        if w.start_day == w.end_day && w.end <= w.start {
            e.push(
                format!("{field}[{i}]"),
                "a window within one day must end after it starts",
            );
        }
    }
}

/// A named schedule administrators apply to keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleTemplate {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub schedule: Schedule,
}

impl Resource for ScheduleTemplate {
    const KIND: ObjectKind = ObjectKind::ScheduleTemplate;

    fn validate(&self, _ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = self.schedule.validate("schedule");
        e.text("name", &self.name, 1, 50);
        e.opt_text("description", &self.description, 500);
        if let Schedule::MultipleTimeWindows { per_cylinder, .. } = &self.schedule
            && !per_cylinder.is_empty()
        {
            e.push(
                "schedule.per_cylinder",
                "templates hold general periods only",
            );
        }
        e.into_result()
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            type_: Some(match self.schedule {
                Schedule::Basic { .. } => "basic",
                Schedule::MultipleTimeWindows { .. } => "multiple_time_windows",
            }),
            unique_name: true,
            ..Projection::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_decides_schedule_type() {
        let mw = Schedule::whole_week();
        for (fw, ok) in [
            ("1.4", false),
            ("2.1", true),
            ("3.0", false),
            ("5.9", false),
            ("6.3.1", true),
            ("10.0", true),
            ("12.7", true),
        ] {
            let v: FirmwareVersion = fw.parse().expect("fw");
            assert_eq!(mw.supported_by(&v), ok, "{fw}");
        }
    }

    #[test]
    fn window_order_checked() {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("time");
        let s = Schedule::MultipleTimeWindows {
            windows: vec![
                TimeWindow {
                    start_day: Day::Friday,
                    start: t(22),
                    end_day: Day::Monday,
                    end: t(6),
                },
                TimeWindow {
                    start_day: Day::Tuesday,
                    start: t(10),
                    end_day: Day::Tuesday,
                    end: t(9),
                },
            ],
            per_cylinder: vec![],
        };
        let e = s.validate("schedule");
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].field, "schedule.windows[1]");
    }
}
