//! Opening decisions: can this key open this cylinder side now, on the state the hardware holds (`DOMAIN.md` §2)?
//!
//! [`can_open`] applies the rules in the order `DOMAIN.md` §2 lists them and
//! returns the first [`Refusal`]:
//!
//! 0. the side exists;
//! 1. the mechanical cutting fits (a **mechanical** side checks nothing else,
//!    whatever the key type); a mechanical key never opens an electronic side;
//! 2. the key is active: activation setting, validity dates, revalidation
//!    (per access-list entry under flexible revalidation), PIN validation;
//! 3. the cylinder access list admits the key, individually or through its key
//!    group without the key among the group's exceptions;
//! 4. the key is not on the cylinder's blocked list;
//! 5. dynamic keys: the key access list holds the cylinder or its group;
//! 6. quartz and dynamic keys: the schedule allows the local time at the cylinder;
//! 7. the cylinder's factory features: delay lock, online open, sequence lock.
//!
//! Conventions this module decides (see the item docs for details):
//!
//! * Normal keys have no clock: validity dates, revalidation and schedules do not
//!   apply to them; the *inactive* setting does.
//! * A key with revalidation that has never been revalidated does not expire
//!   until its first revalidation; a Connect key with PIN validation that has
//!   never been PIN-validated is refused.
//! * Delay lock shifts the start and end of the activation dates and the
//!   revalidation instant by the factory delay. Before the *configured* start the
//!   key is refused as not yet valid (step 2); between the configured and the
//!   delayed start (or in the delay after a revalidation) it is refused as
//!   [`Refusal::DelayLock`] (step 7).
//! * The sequence lock is checked last: [`Refusal::SequenceLockAwaitingSecondKey`]
//!   means "this key is authorised in every other respect", so the caller may
//!   record the insertion as the first of a pair.
//! * Schedule periods are half-open (`from <= t < to`), except that an end at
//!   23:59 or later means the end of that day (24:00), because a time of day
//!   cannot hold 24:00 and "all day" / [`Schedule::whole_week`] end at 23:59.
//!   A window ending earlier in the week than it starts wraps around the week's
//!   end; one starting and ending on the same day must end after it starts (as
//!   the model validates), otherwise it is empty, not a week-long wrap.
//! * Under flexible revalidation, when the key access list reaches the cylinder
//!   both individually and through its group, the longer interval applies (either
//!   entry opens), always capped by the key's own interval.
//! * Per-cylinder periods without any window do not replace the general ones; a
//!   key without a generation follows the generation 1 rule.

use chrono::{DateTime, Datelike, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use lockgate_model::{
    ObjectId,
    cylinder::SideKind,
    key::{Activation, Generation, KeyType},
    schedule::{Day, DayPeriod, Schedule, TimeWindow},
};
use serde::{Deserialize, Serialize};

use crate::state::{
    AccessTarget, CylinderFacts, CylinderProgram, KeyClock, KeyFacts, KeyProgram, Side,
};

/// Sequence lock: the second key must be inserted at most this many seconds after the first.
pub const SEQUENCE_LOCK_WINDOW_SECONDS: i64 = 60;

/// Online open: the key's online update must be at most this many seconds old.
pub const ONLINE_OPEN_WINDOW_SECONDS: i64 = 60;

/// What the caller knows beyond the key's and the cylinder's programmed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningContext<'a> {
    /// The locking system's base time zone (IANA), used when the cylinder has none.
    pub base_time_zone: &'a str,
    /// The previous authorised insertion at this cylinder within the sequence-lock window, if any: (key id, its key group, instant).
    pub previous_insertion: Option<(ObjectId, Option<ObjectId>, DateTime<Utc>)>,
}

/// The cylinder side a key is inserted in: what the cylinder is, what it holds, which side.
#[derive(Debug, Clone, Copy)]
pub struct CylinderSide<'a> {
    pub facts: &'a CylinderFacts,
    pub program: &'a CylinderProgram,
    pub side: Side,
}

/// Why a key does not open a cylinder side. Serialised as `{"reason": "<snake_case>", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The cylinder has no such side (side B of a single cylinder).
    #[error("the cylinder has no side {side:?}")]
    NoSuchSide { side: Side },
    /// The key's mechanical cutting does not fit the cylinder.
    #[error("the key's mechanical cutting does not fit the cylinder")]
    CuttingDoesNotFit,
    /// A mechanical key on an electronic side.
    #[error("a mechanical key cannot open an electronic cylinder side")]
    MechanicalKeyOnElectronicSide,
    /// The key's activation setting is "inactive".
    #[error("the key is not activated (its activation setting is inactive)")]
    KeyInactive,
    /// Before the key's validity start; `starts_at` includes a delay lock.
    #[error("the key is not valid yet: its validity starts at {starts_at}")]
    BeforeValidityStart { starts_at: DateTime<Utc> },
    /// After the key's validity end; `ended_at` includes a delay lock.
    #[error("the key is no longer valid: its validity ended at {ended_at}")]
    AfterValidityEnd { ended_at: DateTime<Utc> },
    /// The revalidation interval has run out since the last revalidation.
    #[error(
        "the key's revalidation expired at {expired_at}: it must be revalidated at an update point"
    )]
    RevalidationExpired { expired_at: DateTime<Utc> },
    /// The PIN validation interval has run out (`None`: the PIN was never entered).
    #[error("the key's PIN validation has expired{}: the holder must enter the PIN again", pin_expiry(.expired_at.as_ref()))]
    PinValidationExpired { expired_at: Option<DateTime<Utc>> },
    /// Neither the key nor its key group is on the cylinder access list.
    #[error("the cylinder's access list admits neither the key nor its key group")]
    NotAdmitted,
    /// The key's group is admitted, but with this key among its exceptions.
    #[error("the key is excepted from its key group {key_group} on this cylinder")]
    ExceptedFromKeyGroup { key_group: ObjectId },
    /// The key is on the cylinder's list of blocked keys.
    #[error("the key is blocked on this cylinder")]
    Blocked,
    /// A dynamic key whose access list holds neither the cylinder nor its group.
    #[error("the dynamic key's access list holds neither the cylinder nor its cylinder group")]
    NotInKeyAccessList,
    /// The key's schedule does not allow the local time at the cylinder.
    #[error("the key's schedule does not allow {} {} (local time at the cylinder)", weekday_of(.local_time), .local_time.time())]
    OutsideSchedule { local_time: NaiveDateTime },
    /// The time zone of the cylinder (or the base time zone) is not an IANA zone.
    #[error("'{zone}' is not a known IANA time zone, so the key's schedule cannot be applied")]
    UnknownTimeZone { zone: String },
    /// The cylinder's delay lock still holds the key back after its activation or revalidation.
    #[error("the cylinder's delay lock holds the key back until {opens_at}")]
    DelayLock { opens_at: DateTime<Utc> },
    /// The key must be updated online just before opening, and was not.
    #[error("online open is required: the key must be updated online just before opening")]
    OnlineOpenRequired,
    /// Sequence lock: this key is the first of a pair; a second authorised key must follow within a minute.
    #[error("the cylinder's sequence lock waits for a second authorised key within one minute")]
    SequenceLockAwaitingSecondKey,
}

fn pin_expiry(expired_at: Option<&DateTime<Utc>>) -> String {
    match expired_at {
        Some(t) => format!(" at {t}"),
        None => " (the PIN has never been entered)".to_owned(),
    }
}

fn weekday_of(t: &NaiveDateTime) -> Weekday {
    t.weekday()
}

/// Whether `key` opens `side` of `cylinder` at `at`, on the programmed (actual) state.
///
/// * `program` / `clock`: what the key holds and remembers of its updates;
/// * `cylinder_program`: the cylinder access list, blocked list, cylinder group and
///   time-zone offset the cylinder holds;
/// * `ctx`: the base time zone and the previous insertion (sequence lock).
///
/// Returns the first [`Refusal`] in the order of `DOMAIN.md` §2 (see the module
/// docs). [`Refusal::SequenceLockAwaitingSecondKey`] is only returned for a key
/// that passes every other rule.
pub fn can_open(
    key: &KeyFacts,
    program: &KeyProgram,
    clock: &KeyClock,
    door: &CylinderSide<'_>,
    at: DateTime<Utc>,
    ctx: &OpeningContext,
) -> Result<(), Refusal> {
    let CylinderSide {
        facts: cylinder,
        program: cylinder_program,
        side,
    } = *door;
    let kind = cylinder.side(side).ok_or(Refusal::NoSuchSide { side })?;

    // 1. Cutting; a mechanical side checks nothing else.
    if !cutting_fits(key, cylinder) {
        return Err(Refusal::CuttingDoesNotFit);
    }
    if kind == SideKind::Mechanical {
        return Ok(());
    }
    if key.key_type == KeyType::Mechanical {
        return Err(Refusal::MechanicalKeyOnElectronicSide);
    }

    let delay = TimeDelta::minutes(i64::from(cylinder.factory.delay_lock_minutes.unwrap_or(0)));
    let entries = KeyEntries::of(key, program, cylinder, cylinder_program);

    // 2. Active (the part of it only the delay lock refuses waits for step 7).
    let delayed_until = check_active(key, program, clock, &entries, at, delay)?;

    // 3. Cylinder access list.
    if !cylinder_program.keys.contains(&key.id) {
        match key
            .key_group
            .and_then(|g| cylinder_program.key_groups.get(&g).map(|exc| (g, exc)))
        {
            Some((g, exceptions)) if exceptions.contains(&key.id) => {
                return Err(Refusal::ExceptedFromKeyGroup { key_group: g });
            }
            Some(_) => {}
            None => return Err(Refusal::NotAdmitted),
        }
    }

    // 4. Blocked list.
    if cylinder_program.blocked.contains(&key.id) {
        return Err(Refusal::Blocked);
    }

    // 5. Dynamic keys: their own access list.
    if key.key_type == KeyType::Dynamic && entries.individual.is_none() && entries.group.is_none() {
        return Err(Refusal::NotInKeyAccessList);
    }

    // 6. Schedule (keys with a clock).
    if key.key_type.has_clock()
        && let Some(schedule) = &program.schedule
    {
        let zone = cylinder.time_zone.as_deref().unwrap_or(ctx.base_time_zone);
        let local = local_time(at, zone, cylinder_program.time_zone_offset_minutes)?;
        let individually = match key.key_type {
            KeyType::Dynamic => entries.individual.is_some(),
            _ => cylinder_program.keys.contains(&key.id),
        };
        let per_cylinder = key.generation == Some(Generation::Gen2) || individually;
        if !schedule_allows(schedule, cylinder.id, per_cylinder, local) {
            return Err(Refusal::OutsideSchedule { local_time: local });
        }
    }

    // 7. Factory features: delay lock, online open, then sequence lock (last, so
    //    that its refusal means "authorised, waiting for the second key").
    if let Some(opens_at) = delayed_until {
        return Err(Refusal::DelayLock { opens_at });
    }
    let online_required = key.online_open || (cylinder.factory.online_open && !key.override_key);
    if online_required
        && !clock
            .last_online_update
            .is_some_and(|t| within(t, at, ONLINE_OPEN_WINDOW_SECONDS))
    {
        return Err(Refusal::OnlineOpenRequired);
    }
    if let Some(seq) = &cylinder.factory.sequence_lock {
        let paired = ctx
            .previous_insertion
            .is_some_and(|(first_key, first_group, first_at)| {
                first_key != key.id
                    && within(first_at, at, SEQUENCE_LOCK_WINDOW_SECONDS)
                    && (!seq.different_key_groups || first_group != key.key_group)
            });
        if !paired {
            return Err(Refusal::SequenceLockAwaitingSecondKey);
        }
    }
    Ok(())
}

/// The cylinder's cutting is `None` (takes every cutting) or equals the key's.
fn cutting_fits(key: &KeyFacts, cylinder: &CylinderFacts) -> bool {
    cylinder
        .cutting
        .as_ref()
        .is_none_or(|c| key.cutting.as_ref() == Some(c))
}

/// `earlier` lies at most `seconds` before `at` (and not after it).
fn within(earlier: DateTime<Utc>, at: DateTime<Utc>, seconds: i64) -> bool {
    earlier <= at && at.signed_duration_since(earlier) <= TimeDelta::seconds(seconds)
}

/// `t + d`, saturating at the end of representable time.
fn later(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The entries of a dynamic key's access list that reach this cylinder, with their
/// flexible-revalidation intervals (`Some(None)`: the entry is there, with the key's interval).
#[derive(Debug)]
struct KeyEntries {
    individual: Option<Option<u32>>,
    group: Option<Option<u32>>,
}

impl KeyEntries {
    fn of(
        key: &KeyFacts,
        program: &KeyProgram,
        cylinder: &CylinderFacts,
        cylinder_program: &CylinderProgram,
    ) -> Self {
        if key.key_type != KeyType::Dynamic {
            return KeyEntries {
                individual: None,
                group: None,
            };
        }
        KeyEntries {
            individual: program
                .access
                .get(&AccessTarget::Cylinder(cylinder.id))
                .copied(),
            group: cylinder_program
                .cylinder_group
                .and_then(|g| program.access.get(&AccessTarget::CylinderGroup(g)).copied()),
        }
    }

    /// The revalidation interval (hours) that applies at this cylinder: the longest
    /// over the entries reaching it (any one of them opens), each capped by the key's
    /// own interval; the key's own interval when no entry reaches it.
    fn revalidation_hours(&self, own: u32) -> u32 {
        [self.individual, self.group]
            .into_iter()
            .flatten()
            .map(|entry| entry.unwrap_or(own).min(own))
            .max()
            .unwrap_or(own)
    }
}

/// Step 2. `Ok(Some(t))`: active but for the delay lock, which holds the key back until `t`.
fn check_active(
    key: &KeyFacts,
    program: &KeyProgram,
    clock: &KeyClock,
    entries: &KeyEntries,
    at: DateTime<Utc>,
    delay: TimeDelta,
) -> Result<Option<DateTime<Utc>>, Refusal> {
    let has_clock = key.key_type.has_clock();
    let mut delayed_until: Option<DateTime<Utc>> = None;
    match &program.activation {
        Activation::Inactive => return Err(Refusal::KeyInactive),
        Activation::AlwaysActive => {}
        // Normal keys cannot hold dates.
        Activation::Between { .. } if !has_clock => {}
        Activation::Between { from, until } => {
            let starts_at = later(*from, delay);
            if at < *from {
                return Err(Refusal::BeforeValidityStart { starts_at });
            }
            let ended_at = later(*until, delay);
            if at >= ended_at {
                return Err(Refusal::AfterValidityEnd { ended_at });
            }
            if at < starts_at {
                delayed_until = Some(starts_at);
            }
        }
    }
    if has_clock
        && let Some(revalidation) = &program.revalidation
        && let Some(last) = clock.last_revalidation
    {
        // One-time update or not, the interval counts from the revalidation the key holds.
        let hours = entries.revalidation_hours(revalidation.interval_hours);
        let valid_from = later(last, delay);
        let expired_at = later(valid_from, TimeDelta::hours(i64::from(hours)));
        if at >= expired_at {
            return Err(Refusal::RevalidationExpired { expired_at });
        }
        if delay > TimeDelta::zero() && at < valid_from {
            delayed_until = delayed_until.max(Some(valid_from));
        }
    }
    if key.connect
        && let Some(pin) = &program.pin
    {
        let expired_at = clock
            .last_pin_validation
            .map(|t| later(t, TimeDelta::minutes(i64::from(pin.interval_minutes))));
        if expired_at.is_none_or(|e| at >= e) {
            return Err(Refusal::PinValidationExpired { expired_at });
        }
    }
    Ok(delayed_until)
}

/// Local time at the cylinder: `at` in `zone`, plus the cylinder's time-zone offset.
fn local_time(
    at: DateTime<Utc>,
    zone: &str,
    offset_minutes: i32,
) -> Result<NaiveDateTime, Refusal> {
    let tz: Tz = zone.parse().map_err(|_| Refusal::UnknownTimeZone {
        zone: zone.to_owned(),
    })?;
    let local = at.with_timezone(&tz).naive_local();
    Ok(local
        .checked_add_signed(TimeDelta::minutes(i64::from(offset_minutes)))
        .unwrap_or(local))
}

const DAY_NANOS: i64 = 24 * 60 * 60 * 1_000_000_000;
const WEEK_NANOS: i64 = 7 * DAY_NANOS;

/// An end of day: 23:59 or later stands for 24:00.
fn is_end_of_day(t: NaiveTime) -> bool {
    t >= NaiveTime::from_hms_opt(23, 59, 0).unwrap_or(NaiveTime::MIN)
}

fn nanos_of_day(t: NaiveTime) -> i64 {
    i64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(t.nanosecond())
}

/// Position in the week (nanoseconds from Monday 00:00).
fn week_position(day: Day, t: NaiveTime) -> i64 {
    i64::from(day.week_minute()) * 60 * 1_000_000_000 + nanos_of_day(t)
}

fn period_contains(p: &DayPeriod, t: NaiveTime) -> bool {
    p.from <= t && (t < p.to || is_end_of_day(p.to))
}

/// Whether `window` contains the week position `pos`. A window whose end lies before its
/// start in the week wraps around the end of the week (Friday 22:00 → Monday 06:00); a
/// window starting and ending on the same day must end after it starts (the model's
/// validation refuses anything else), and contains nothing otherwise.
fn window_contains(w: &TimeWindow, pos: i64) -> bool {
    if w.start_day == w.end_day && w.end <= w.start {
        return false;
    }
    let start = week_position(w.start_day, w.start);
    let end = if is_end_of_day(w.end) {
        i64::from(w.end_day.week_minute()) * 60 * 1_000_000_000 + DAY_NANOS
    } else {
        week_position(w.end_day, w.end)
    };
    match start.cmp(&end) {
        std::cmp::Ordering::Less => start <= pos && pos < end,
        std::cmp::Ordering::Greater => pos >= start || pos < end,
        // A full turn of the week, e.g. Tuesday 00:00 → Monday 23:59 (24:00).
        std::cmp::Ordering::Equal => true,
    }
}

/// Whether `schedule` allows the local time `local` at cylinder `cylinder_id`.
/// `per_cylinder`: the key honours per-cylinder periods at this cylinder (generation 2
/// always; generation 1 only when the cylinder reaches the key individually).
fn schedule_allows(
    schedule: &Schedule,
    cylinder_id: ObjectId,
    per_cylinder: bool,
    local: NaiveDateTime,
) -> bool {
    let day = Day::from_weekday(local.weekday());
    let time = local.time();
    match schedule {
        Schedule::Basic { days } => days.get(&day).is_some_and(|p| period_contains(p, time)),
        Schedule::MultipleTimeWindows {
            windows,
            per_cylinder: periods,
        } => {
            let own = per_cylinder
                .then(|| {
                    periods
                        .iter()
                        .find(|p| p.cylinder_id == cylinder_id && !p.windows.is_empty())
                })
                .flatten();
            let windows = own.map_or(windows.as_slice(), |p| p.windows.as_slice());
            // A leap second at the very end of Sunday stays in Sunday.
            let pos = week_position(day, time).min(WEEK_NANOS - 1);
            windows.iter().any(|w| window_contains(w, pos))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use lockgate_model::{
        cylinder::{FactoryFeatures, SequenceLock},
        key::{PinValidation, Revalidation},
        schedule::CylinderPeriods,
    };
    use proptest::prelude::*;

    use super::*;

    const KEY: ObjectId = 1;
    const OTHER_KEY: ObjectId = 2;
    const KEY_GROUP: ObjectId = 10;
    const OTHER_KEY_GROUP: ObjectId = 11;
    const CYLINDER: ObjectId = 100;
    const CYLINDER_GROUP: ObjectId = 500;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("time of day")
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    fn window(start_day: Day, start: NaiveTime, end_day: Day, end: NaiveTime) -> TimeWindow {
        TimeWindow {
            start_day,
            start,
            end_day,
            end,
        }
    }

    fn windows(ws: Vec<TimeWindow>) -> Schedule {
        Schedule::MultipleTimeWindows {
            windows: ws,
            per_cylinder: Vec::new(),
        }
    }

    /// Wednesday 2025-06-04, 12:00 UTC (14:00 in Berlin).
    const NOW: &str = "2025-06-04T12:00:00Z";

    /// Everything `can_open` needs, defaulting to a case that opens: a generation 2
    /// dynamic key of key group 10 with cylinder 100 on its access list, at a
    /// single electronic cylinder in cylinder group 500 that admits key group 10.
    #[derive(Debug, Clone)]
    struct Scenario {
        key: KeyFacts,
        program: KeyProgram,
        clock: KeyClock,
        cylinder: CylinderFacts,
        cylinder_program: CylinderProgram,
        side: Side,
        at: DateTime<Utc>,
        base: &'static str,
        previous: Option<(ObjectId, Option<ObjectId>, DateTime<Utc>)>,
    }

    impl Scenario {
        fn new() -> Self {
            Scenario {
                key: KeyFacts {
                    id: KEY,
                    key_type: KeyType::Dynamic,
                    generation: Some(Generation::Gen2),
                    firmware: None,
                    connect: false,
                    key_group: Some(KEY_GROUP),
                    cutting: Some("C1".into()),
                    capacity: None,
                    online_open: false,
                    override_key: false,
                },
                program: KeyProgram {
                    access: BTreeMap::from([(AccessTarget::Cylinder(CYLINDER), None)]),
                    ..KeyProgram::default()
                },
                clock: KeyClock::default(),
                cylinder: CylinderFacts {
                    id: CYLINDER,
                    side_a: SideKind::Electronic,
                    side_b: None,
                    cutting: Some("C1".into()),
                    firmware: None,
                    time_zone: None,
                    factory: FactoryFeatures::default(),
                },
                cylinder_program: CylinderProgram {
                    key_groups: BTreeMap::from([(KEY_GROUP, BTreeSet::new())]),
                    cylinder_group: Some(CYLINDER_GROUP),
                    ..CylinderProgram::default()
                },
                side: Side::A,
                at: utc(NOW),
                base: "Europe/Berlin",
                previous: None,
            }
        }

        fn run(&self) -> Result<(), Refusal> {
            can_open(
                &self.key,
                &self.program,
                &self.clock,
                &CylinderSide {
                    facts: &self.cylinder,
                    program: &self.cylinder_program,
                    side: self.side,
                },
                self.at,
                &OpeningContext {
                    base_time_zone: self.base,
                    previous_insertion: self.previous,
                },
            )
        }

        fn quartz(&mut self) {
            self.key.key_type = KeyType::Quartz;
            self.program.access.clear();
        }

        fn normal(&mut self) {
            self.key.key_type = KeyType::Normal;
            self.program.access.clear();
        }

        fn mechanical(&mut self) {
            self.key.key_type = KeyType::Mechanical;
            self.key.key_group = None;
            self.key.generation = None;
            self.program.access.clear();
        }

        fn double_with_mechanical_b(&mut self) {
            self.cylinder.side_b = Some(SideKind::Mechanical);
            self.side = Side::B;
        }
    }

    /// A change to the default scenario.
    type Edit = fn(&mut Scenario);
    type Case = (&'static str, Edit, Result<(), Refusal>);

    fn check(cases: Vec<Case>) {
        for (name, edit, expected) in cases {
            let mut s = Scenario::new();
            edit(&mut s);
            assert_eq!(s.run(), expected, "{name}");
        }
    }

    /// The active-window edits below: dates around `NOW`.
    fn between(s: &mut Scenario, from: &str, until: &str) {
        s.program.activation = Activation::Between {
            from: utc(from),
            until: utc(until),
        };
    }

    fn revalidation(s: &mut Scenario, hours: u32, one_time_update: bool, last: &str) {
        s.program.revalidation = Some(Revalidation {
            interval_hours: hours,
            one_time_update,
        });
        s.clock.last_revalidation = Some(utc(last));
    }

    fn pin(s: &mut Scenario, minutes: u32, last: Option<&str>) {
        s.key.connect = true;
        s.program.pin = Some(PinValidation {
            interval_minutes: minutes,
        });
        s.clock.last_pin_validation = last.map(utc);
    }

    #[test]
    fn side_cutting_and_key_type() {
        use Refusal as R;
        check(vec![
            ("default scenario opens", |_| {}, Ok(())),
            (
                "side B of a single cylinder",
                |s| s.side = Side::B,
                Err(R::NoSuchSide { side: Side::B }),
            ),
            (
                "side B of a double electronic cylinder",
                |s| {
                    s.cylinder.side_b = Some(SideKind::Electronic);
                    s.side = Side::B;
                },
                Ok(()),
            ),
            (
                "cutting differs",
                |s| s.key.cutting = Some("C2".into()),
                Err(R::CuttingDoesNotFit),
            ),
            (
                "key without cutting at a cylinder with one",
                |s| s.key.cutting = None,
                Err(R::CuttingDoesNotFit),
            ),
            (
                "cylinder takes every cutting",
                |s| {
                    s.cylinder.cutting = None;
                    s.key.cutting = Some("anything".into());
                },
                Ok(()),
            ),
            (
                "mechanical key on an electronic side",
                Scenario::mechanical,
                Err(R::MechanicalKeyOnElectronicSide),
            ),
            (
                "mechanical key with a wrong cutting: the cutting comes first",
                |s| {
                    s.mechanical();
                    s.key.cutting = Some("C2".into());
                },
                Err(R::CuttingDoesNotFit),
            ),
            (
                "mechanical key on a mechanical side",
                |s| {
                    s.mechanical();
                    s.double_with_mechanical_b();
                },
                Ok(()),
            ),
            (
                "mechanical side refuses a wrong cutting",
                |s| {
                    s.double_with_mechanical_b();
                    s.key.cutting = Some("C2".into());
                },
                Err(R::CuttingDoesNotFit),
            ),
            (
                "mechanical side checks nothing but the cutting",
                |s| {
                    s.double_with_mechanical_b();
                    s.program.activation = Activation::Inactive;
                    s.cylinder_program = CylinderProgram::default();
                    s.cylinder_program.blocked.insert(KEY);
                    s.program.access.clear();
                    s.program.schedule = Some(windows(vec![]));
                    s.cylinder.factory.online_open = true;
                    s.cylinder.factory.sequence_lock = Some(SequenceLock {
                        different_key_groups: false,
                    });
                },
                Ok(()),
            ),
            ("normal key", Scenario::normal, Ok(())),
            ("quartz key", Scenario::quartz, Ok(())),
        ]);
    }

    #[test]
    fn activation_and_validity_dates() {
        use Refusal as R;
        check(vec![
            (
                "inactive",
                |s| s.program.activation = Activation::Inactive,
                Err(R::KeyInactive),
            ),
            (
                "inactive normal key",
                |s| {
                    s.normal();
                    s.program.activation = Activation::Inactive;
                },
                Err(R::KeyInactive),
            ),
            (
                "within the dates",
                |s| between(s, "2025-06-01T00:00:00Z", "2025-06-05T00:00:00Z"),
                Ok(()),
            ),
            (
                "at the start (inclusive)",
                |s| between(s, NOW, "2025-06-05T00:00:00Z"),
                Ok(()),
            ),
            (
                "one second before the start",
                |s| between(s, "2025-06-04T12:00:01Z", "2025-06-05T00:00:00Z"),
                Err(R::BeforeValidityStart {
                    starts_at: utc("2025-06-04T12:00:01Z"),
                }),
            ),
            (
                "one second before the end",
                |s| between(s, "2025-06-01T00:00:00Z", "2025-06-04T12:00:01Z"),
                Ok(()),
            ),
            (
                "at the end (exclusive)",
                |s| between(s, "2025-06-01T00:00:00Z", NOW),
                Err(R::AfterValidityEnd { ended_at: utc(NOW) }),
            ),
            (
                "normal key ignores dates it cannot hold",
                |s| {
                    s.normal();
                    between(s, "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z");
                },
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn revalidation_intervals() {
        use Refusal as R;
        check(vec![
            (
                "revalidated 23:59:59 ago, 24 h interval",
                |s| revalidation(s, 24, false, "2025-06-03T12:00:01Z"),
                Ok(()),
            ),
            (
                "revalidated exactly 24 h ago",
                |s| revalidation(s, 24, false, "2025-06-03T12:00:00Z"),
                Err(R::RevalidationExpired {
                    expired_at: utc(NOW),
                }),
            ),
            (
                "never revalidated: no expiry until the first revalidation",
                |s| {
                    revalidation(s, 1, false, NOW);
                    s.clock.last_revalidation = None;
                },
                Ok(()),
            ),
            (
                "one-time update: the interval counts from that revalidation",
                |s| revalidation(s, 24, true, "2025-06-03T12:00:01Z"),
                Ok(()),
            ),
            (
                "one-time update: expired after its interval",
                |s| revalidation(s, 24, true, "2025-06-03T11:00:00Z"),
                Err(R::RevalidationExpired {
                    expired_at: utc("2025-06-04T11:00:00Z"),
                }),
            ),
            (
                "quartz key expires too",
                |s| {
                    s.quartz();
                    revalidation(s, 1, false, "2025-06-04T10:00:00Z");
                },
                Err(R::RevalidationExpired {
                    expired_at: utc("2025-06-04T11:00:00Z"),
                }),
            ),
            (
                "normal key has no clock to expire",
                |s| {
                    s.normal();
                    revalidation(s, 1, false, "2025-01-01T00:00:00Z");
                },
                Ok(()),
            ),
            (
                "flexible: the cylinder entry's 2 h interval",
                |s| {
                    revalidation(s, 24, false, "2025-06-04T09:00:00Z");
                    s.program
                        .access
                        .insert(AccessTarget::Cylinder(CYLINDER), Some(2));
                },
                Err(R::RevalidationExpired {
                    expired_at: utc("2025-06-04T11:00:00Z"),
                }),
            ),
            (
                "flexible: the group entry's 2 h interval",
                |s| {
                    revalidation(s, 24, false, "2025-06-04T09:00:00Z");
                    s.program.access.clear();
                    s.program
                        .access
                        .insert(AccessTarget::CylinderGroup(CYLINDER_GROUP), Some(2));
                },
                Err(R::RevalidationExpired {
                    expired_at: utc("2025-06-04T11:00:00Z"),
                }),
            ),
            (
                "flexible: 4 h entry still valid after 3 h",
                |s| {
                    revalidation(s, 24, false, "2025-06-04T09:00:00Z");
                    s.program
                        .access
                        .insert(AccessTarget::Cylinder(CYLINDER), Some(4));
                },
                Ok(()),
            ),
            (
                "flexible: reached individually (key's interval) and by a 2 h group: the longest",
                |s| {
                    revalidation(s, 24, false, "2025-06-04T09:00:00Z");
                    s.program
                        .access
                        .insert(AccessTarget::CylinderGroup(CYLINDER_GROUP), Some(2));
                },
                Ok(()),
            ),
            (
                "flexible: an entry longer than the key is capped by the key",
                |s| {
                    revalidation(s, 2, false, "2025-06-04T09:00:00Z");
                    s.program
                        .access
                        .insert(AccessTarget::Cylinder(CYLINDER), Some(100));
                },
                Err(R::RevalidationExpired {
                    expired_at: utc("2025-06-04T11:00:00Z"),
                }),
            ),
            (
                "flexible: another group's 1 h entry does not apply",
                |s| {
                    revalidation(s, 24, false, "2025-06-04T09:00:00Z");
                    s.program
                        .access
                        .insert(AccessTarget::CylinderGroup(CYLINDER_GROUP + 1), Some(1));
                },
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn pin_validation() {
        use Refusal as R;
        check(vec![
            (
                "PIN entered 29 min ago, 30 min interval",
                |s| pin(s, 30, Some("2025-06-04T11:31:00Z")),
                Ok(()),
            ),
            (
                "PIN entered 30 min ago",
                |s| pin(s, 30, Some("2025-06-04T11:30:00Z")),
                Err(R::PinValidationExpired {
                    expired_at: Some(utc(NOW)),
                }),
            ),
            (
                "PIN never entered",
                |s| pin(s, 30, None),
                Err(R::PinValidationExpired { expired_at: None }),
            ),
            (
                "a key that is not a Connect key holds no PIN setting",
                |s| {
                    pin(s, 30, None);
                    s.key.connect = false;
                },
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn access_lists_and_blocking() {
        use Refusal as R;
        check(vec![
            (
                "key group not admitted",
                |s| s.cylinder_program.key_groups.clear(),
                Err(R::NotAdmitted),
            ),
            (
                "another key group admitted",
                |s| {
                    s.cylinder_program.key_groups =
                        BTreeMap::from([(OTHER_KEY_GROUP, BTreeSet::new())]);
                },
                Err(R::NotAdmitted),
            ),
            (
                "admitted individually",
                |s| {
                    s.cylinder_program.key_groups.clear();
                    s.cylinder_program.keys.insert(KEY);
                },
                Ok(()),
            ),
            (
                "key without a group, not listed",
                |s| s.key.key_group = None,
                Err(R::NotAdmitted),
            ),
            (
                "excepted from its group",
                |s| {
                    s.cylinder_program
                        .key_groups
                        .insert(KEY_GROUP, BTreeSet::from([KEY]));
                },
                Err(R::ExceptedFromKeyGroup {
                    key_group: KEY_GROUP,
                }),
            ),
            (
                "another key excepted",
                |s| {
                    s.cylinder_program
                        .key_groups
                        .insert(KEY_GROUP, BTreeSet::from([OTHER_KEY]));
                },
                Ok(()),
            ),
            (
                "excepted from its group but listed individually",
                |s| {
                    s.cylinder_program
                        .key_groups
                        .insert(KEY_GROUP, BTreeSet::from([KEY]));
                    s.cylinder_program.keys.insert(KEY);
                },
                Ok(()),
            ),
            (
                "blocked",
                |s| {
                    s.cylinder_program.blocked.insert(KEY);
                },
                Err(R::Blocked),
            ),
            (
                "blocked although listed individually",
                |s| {
                    s.cylinder_program.keys.insert(KEY);
                    s.cylinder_program.blocked.insert(KEY);
                },
                Err(R::Blocked),
            ),
            (
                "another key blocked",
                |s| {
                    s.cylinder_program.blocked.insert(OTHER_KEY);
                },
                Ok(()),
            ),
            (
                "dynamic key with an empty access list",
                |s| s.program.access.clear(),
                Err(R::NotInKeyAccessList),
            ),
            (
                "dynamic key reaching the cylinder through its group",
                |s| {
                    s.program.access =
                        BTreeMap::from([(AccessTarget::CylinderGroup(CYLINDER_GROUP), None)]);
                },
                Ok(()),
            ),
            (
                "dynamic key with another cylinder and another group",
                |s| {
                    s.program.access = BTreeMap::from([
                        (AccessTarget::Cylinder(CYLINDER + 1), None),
                        (AccessTarget::CylinderGroup(CYLINDER_GROUP + 1), None),
                    ]);
                },
                Err(R::NotInKeyAccessList),
            ),
            (
                "dynamic key with the group, cylinder in no group",
                |s| {
                    s.program.access =
                        BTreeMap::from([(AccessTarget::CylinderGroup(CYLINDER_GROUP), None)]);
                    s.cylinder_program.cylinder_group = None;
                },
                Err(R::NotInKeyAccessList),
            ),
            (
                "quartz key has no access list of its own",
                Scenario::quartz,
                Ok(()),
            ),
        ]);
    }

    fn office_hours(s: &mut Scenario) {
        // Wednesday 09:00–17:00 only.
        s.program.schedule = Some(Schedule::Basic {
            days: BTreeMap::from([(
                Day::Wednesday,
                DayPeriod {
                    from: hm(9, 0),
                    to: hm(17, 0),
                },
            )]),
        });
    }

    fn local(s: &str) -> NaiveDateTime {
        s.parse().expect("local date-time")
    }

    #[test]
    fn basic_schedule() {
        use Refusal as R;
        assert_eq!(utc(NOW).weekday(), Weekday::Wed);
        check(vec![
            ("14:00 in Berlin", office_hours, Ok(())),
            (
                "09:00 in Berlin: from is inclusive",
                |s| {
                    office_hours(s);
                    s.at = utc("2025-06-04T07:00:00Z");
                },
                Ok(()),
            ),
            (
                "08:59:59 in Berlin",
                |s| {
                    office_hours(s);
                    s.at = utc("2025-06-04T06:59:59Z");
                },
                Err(R::OutsideSchedule {
                    local_time: local("2025-06-04T08:59:59"),
                }),
            ),
            (
                "17:00 in Berlin: to is exclusive",
                |s| {
                    office_hours(s);
                    s.at = utc("2025-06-04T15:00:00Z");
                },
                Err(R::OutsideSchedule {
                    local_time: local("2025-06-04T17:00:00"),
                }),
            ),
            (
                "Thursday has no period",
                |s| {
                    office_hours(s);
                    s.at = utc("2025-06-05T12:00:00Z");
                },
                Err(R::OutsideSchedule {
                    local_time: local("2025-06-05T14:00:00"),
                }),
            ),
            (
                "the quartz key applies its schedule",
                |s| {
                    s.quartz();
                    office_hours(s);
                    s.at = utc("2025-06-05T12:00:00Z");
                },
                Err(R::OutsideSchedule {
                    local_time: local("2025-06-05T14:00:00"),
                }),
            ),
            (
                "a normal key cannot hold a schedule",
                |s| {
                    s.normal();
                    office_hours(s);
                    s.at = utc("2025-06-05T12:00:00Z");
                },
                Ok(()),
            ),
            (
                "'all day' ends at 23:59 and includes the last minute",
                |s| {
                    s.program.schedule = Some(Schedule::Basic {
                        days: BTreeMap::from([(
                            Day::Wednesday,
                            DayPeriod {
                                from: hm(0, 0),
                                to: hm(23, 59),
                            },
                        )]),
                    });
                    s.at = utc("2025-06-04T21:59:59Z"); // 23:59:59 CEST
                },
                Ok(()),
            ),
            (
                "the cylinder's own time zone replaces the base zone",
                |s| {
                    office_hours(s);
                    // 12:00 UTC is 08:00 in New York.
                    s.cylinder.time_zone = Some("America/New_York".into());
                },
                Err(R::OutsideSchedule {
                    local_time: local("2025-06-04T08:00:00"),
                }),
            ),
            (
                "an unknown base time zone",
                |s| {
                    office_hours(s);
                    s.base = "Mars/Olympus_Mons";
                },
                Err(R::UnknownTimeZone {
                    zone: "Mars/Olympus_Mons".into(),
                }),
            ),
            (
                "no schedule needs no time zone",
                |s| s.base = "Mars/Olympus_Mons",
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn daylight_saving_time_in_berlin() {
        fn dst_window(s: &mut Scenario) {
            // Sunday 02:30–03:30 local; Europe/Berlin, switches on 2025-03-30 and 2025-10-26.
            s.program.schedule = Some(windows(vec![window(
                Day::Sunday,
                hm(2, 30),
                Day::Sunday,
                hm(3, 30),
            )]));
        }
        // (instant UTC, local time at the cylinder, opens)
        let rows = [
            // Spring forward: 02:00 CET becomes 03:00 CEST; 02:30–02:59 never happens.
            ("2025-03-30T00:59:59Z", "2025-03-30T01:59:59", false),
            ("2025-03-30T01:00:00Z", "2025-03-30T03:00:00", true),
            ("2025-03-30T01:29:59Z", "2025-03-30T03:29:59", true),
            ("2025-03-30T01:30:00Z", "2025-03-30T03:30:00", false),
            // Fall back: 03:00 CEST becomes 02:00 CET; 02:00–02:59 happens twice.
            ("2025-10-26T00:29:59Z", "2025-10-26T02:29:59", false),
            ("2025-10-26T00:30:00Z", "2025-10-26T02:30:00", true),
            ("2025-10-26T00:59:59Z", "2025-10-26T02:59:59", true),
            ("2025-10-26T01:00:00Z", "2025-10-26T02:00:00", false),
            ("2025-10-26T01:29:59Z", "2025-10-26T02:29:59", false),
            ("2025-10-26T01:30:00Z", "2025-10-26T02:30:00", true),
            ("2025-10-26T02:29:59Z", "2025-10-26T03:29:59", true),
            ("2025-10-26T02:30:00Z", "2025-10-26T03:30:00", false),
            // An ordinary summer Sunday: the window is one hour of CEST.
            ("2025-06-08T00:30:00Z", "2025-06-08T02:30:00", true),
            ("2025-06-08T01:30:00Z", "2025-06-08T03:30:00", false),
        ];
        for (at, local_time, opens) in rows {
            let mut s = Scenario::new();
            dst_window(&mut s);
            s.at = utc(at);
            let expected = if opens {
                Ok(())
            } else {
                Err(Refusal::OutsideSchedule {
                    local_time: local(local_time),
                })
            };
            assert_eq!(s.run(), expected, "{at}");
        }
    }

    #[test]
    fn time_zone_offsets() {
        // Wednesday 09:00–17:00; NOW is 14:00 in Berlin.
        // (offset in minutes, instant, local time at the cylinder, opens)
        let rows = [
            (0, NOW, "2025-06-04T14:00:00", true),
            (180, NOW, "2025-06-04T17:00:00", false),
            (179, NOW, "2025-06-04T16:59:00", true),
            (-300, NOW, "2025-06-04T09:00:00", true),
            (-301, NOW, "2025-06-04T08:59:00", false),
            // The offset moves the local time across midnight into another weekday.
            (-720, "2025-06-04T08:00:00Z", "2025-06-03T22:00:00", false),
            (840, "2025-06-03T20:00:00Z", "2025-06-04T12:00:00", true),
            // DST still applies under the offset: 10:00 UTC is 11:00 CET in winter.
            (-120, "2025-01-08T10:00:00Z", "2025-01-08T09:00:00", true),
            (-121, "2025-01-08T10:00:00Z", "2025-01-08T08:59:00", false),
        ];
        for (offset, at, local_time, opens) in rows {
            let mut s = Scenario::new();
            office_hours(&mut s);
            s.cylinder_program.time_zone_offset_minutes = offset;
            s.at = utc(at);
            let expected = if opens {
                Ok(())
            } else {
                Err(Refusal::OutsideSchedule {
                    local_time: local(local_time),
                })
            };
            assert_eq!(s.run(), expected, "offset {offset} at {at}");
        }
    }

    #[test]
    fn multiple_time_windows_wrapping_the_week() {
        let weekend = window(Day::Friday, hm(22, 0), Day::Monday, hm(6, 0));
        let wednesday_morning = window(Day::Wednesday, hm(8, 0), Day::Wednesday, hm(9, 0));
        let sunday_evening = window(Day::Sunday, hm(20, 0), Day::Sunday, hm(23, 59));
        let tuesday_to_tuesday = window(Day::Tuesday, hm(0, 0), Day::Monday, hm(23, 59));
        let tuesday_backwards = window(Day::Tuesday, hm(10, 0), Day::Tuesday, hm(9, 0));
        // (windows, instant in UTC = local time, opens)
        let rows: Vec<(Vec<TimeWindow>, &str, bool)> = vec![
            (vec![weekend], "2025-06-06T21:59:59Z", false), // Friday
            (vec![weekend], "2025-06-06T22:00:00Z", true),
            (vec![weekend], "2025-06-07T12:00:00Z", true), // Saturday
            (vec![weekend], "2025-06-08T23:59:59Z", true), // Sunday
            (vec![weekend], "2025-06-09T00:00:00Z", true), // Monday
            (vec![weekend], "2025-06-09T05:59:59Z", true),
            (vec![weekend], "2025-06-09T06:00:00Z", false),
            (vec![weekend], "2025-06-04T12:00:00Z", false), // Wednesday
            (
                vec![weekend, wednesday_morning],
                "2025-06-04T08:30:00Z",
                true,
            ),
            (
                vec![weekend, wednesday_morning],
                "2025-06-04T09:00:00Z",
                false,
            ),
            (vec![sunday_evening], "2025-06-08T23:59:59Z", true),
            (vec![sunday_evening], "2025-06-09T00:00:00Z", false),
            (vec![tuesday_to_tuesday], "2025-06-09T23:59:59Z", true), // a full turn
            (vec![tuesday_to_tuesday], "2025-06-04T12:00:00Z", true),
            (vec![], "2025-06-04T12:00:00Z", false),
            // Invalid (same day, ending before it starts): not read as a week-long wrap.
            (vec![tuesday_backwards], "2025-06-04T12:00:00Z", false),
            (vec![tuesday_backwards], "2025-06-03T09:30:00Z", false),
        ];
        for (ws, at, opens) in rows {
            let mut s = Scenario::new();
            s.base = "UTC";
            s.program.schedule = Some(windows(ws.clone()));
            s.at = utc(at);
            assert_eq!(s.run().is_ok(), opens, "{ws:?} at {at}");
        }
        // The default whole-week schedule, at the last second of the week.
        let mut s = Scenario::new();
        s.program.schedule = Some(Schedule::whole_week());
        s.at = utc("2025-06-08T21:59:59Z"); // Sunday 23:59:59 CEST
        assert_eq!(s.run(), Ok(()));
    }

    /// General periods Wednesday 08:00–12:00; per-cylinder periods at cylinder 100
    /// Wednesday 14:00–18:00. Base zone UTC.
    fn per_cylinder_schedule(s: &mut Scenario, per_cylinder: Vec<CylinderPeriods>) {
        s.base = "UTC";
        s.program.schedule = Some(Schedule::MultipleTimeWindows {
            windows: vec![window(Day::Wednesday, hm(8, 0), Day::Wednesday, hm(12, 0))],
            per_cylinder,
        });
    }

    fn afternoon_at(cylinder_id: ObjectId) -> Vec<CylinderPeriods> {
        vec![CylinderPeriods {
            cylinder_id,
            windows: vec![window(Day::Wednesday, hm(14, 0), Day::Wednesday, hm(18, 0))],
        }]
    }

    #[derive(Debug, Clone, Copy)]
    enum Reach {
        /// Dynamic key: the cylinder on its access list; other keys: listed on the cylinder.
        Individual,
        /// Dynamic key: the cylinder group on its access list; other keys: their key group.
        Group,
        /// Dynamic key: both the cylinder and its group.
        Both,
    }

    #[test]
    fn per_cylinder_periods_by_generation_and_reach() {
        use Generation::{Gen1, Gen2};
        use Reach::{Both, Group, Individual};
        // (key type, generation, reach, per-cylinder periods for this cylinder, they apply)
        let rows = [
            (KeyType::Dynamic, Some(Gen2), Individual, true, true),
            (KeyType::Dynamic, Some(Gen2), Group, true, true),
            (KeyType::Dynamic, Some(Gen1), Individual, true, true),
            (KeyType::Dynamic, Some(Gen1), Group, true, false),
            (KeyType::Dynamic, Some(Gen1), Both, true, true),
            (KeyType::Quartz, Some(Gen1), Individual, true, true),
            (KeyType::Quartz, Some(Gen1), Group, true, false),
            (KeyType::Quartz, Some(Gen2), Group, true, true),
            (KeyType::Dynamic, None, Group, true, false),
            (KeyType::Dynamic, Some(Gen2), Group, false, false),
            (KeyType::Dynamic, Some(Gen2), Individual, false, false),
        ];
        for (key_type, generation, reach, here, applies) in rows {
            let name = format!("{key_type:?} {generation:?} {reach:?} periods here: {here}");
            let mut s = Scenario::new();
            s.key.key_type = key_type;
            s.key.generation = generation;
            s.program.access.clear();
            match (key_type, reach) {
                (KeyType::Dynamic, Individual) => {
                    s.program
                        .access
                        .insert(AccessTarget::Cylinder(CYLINDER), None);
                }
                (KeyType::Dynamic, Group) => {
                    s.program
                        .access
                        .insert(AccessTarget::CylinderGroup(CYLINDER_GROUP), None);
                }
                (KeyType::Dynamic, Both) => {
                    s.program
                        .access
                        .insert(AccessTarget::Cylinder(CYLINDER), None);
                    s.program
                        .access
                        .insert(AccessTarget::CylinderGroup(CYLINDER_GROUP), None);
                }
                (_, Individual | Both) => {
                    s.cylinder_program.key_groups.clear();
                    s.cylinder_program.keys.insert(KEY);
                }
                (_, Group) => {}
            }
            per_cylinder_schedule(
                &mut s,
                afternoon_at(if here { CYLINDER } else { CYLINDER + 1 }),
            );
            s.at = utc("2025-06-04T15:00:00Z");
            assert_eq!(s.run().is_ok(), applies, "{name}, afternoon");
            s.at = utc("2025-06-04T10:00:00Z");
            assert_eq!(s.run().is_ok(), !applies, "{name}, morning");
        }

        // Per-cylinder periods without any window do not replace the general schedule.
        let mut s = Scenario::new();
        per_cylinder_schedule(
            &mut s,
            vec![CylinderPeriods {
                cylinder_id: CYLINDER,
                windows: Vec::new(),
            }],
        );
        s.at = utc("2025-06-04T10:00:00Z");
        assert_eq!(s.run(), Ok(()));
    }

    fn sequence(s: &mut Scenario, different_key_groups: bool) {
        s.cylinder.factory.sequence_lock = Some(SequenceLock {
            different_key_groups,
        });
    }

    #[test]
    fn sequence_lock() {
        use Refusal as R;
        check(vec![
            (
                "first key of a pair",
                |s| sequence(s, false),
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "second key of the same group after 30 s",
                |s| {
                    sequence(s, false);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at - secs(30)));
                },
                Ok(()),
            ),
            (
                "second key after exactly 60 s",
                |s| {
                    sequence(s, false);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at - secs(60)));
                },
                Ok(()),
            ),
            (
                "second key after 61 s",
                |s| {
                    sequence(s, false);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at - secs(61)));
                },
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "the same key twice",
                |s| {
                    sequence(s, false);
                    s.previous = Some((KEY, Some(KEY_GROUP), s.at - secs(10)));
                },
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "an insertion after this instant does not count",
                |s| {
                    sequence(s, false);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at + secs(10)));
                },
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "different groups required, same group",
                |s| {
                    sequence(s, true);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at - secs(30)));
                },
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "different groups required, another group",
                |s| {
                    sequence(s, true);
                    s.previous = Some((OTHER_KEY, Some(OTHER_KEY_GROUP), s.at - secs(30)));
                },
                Ok(()),
            ),
            (
                "different groups required, another group, after 61 s",
                |s| {
                    sequence(s, true);
                    s.previous = Some((OTHER_KEY, Some(OTHER_KEY_GROUP), s.at - secs(61)));
                },
                Err(R::SequenceLockAwaitingSecondKey),
            ),
            (
                "an unauthorised key is refused for its own reason, not as a first key",
                |s| {
                    sequence(s, false);
                    s.cylinder_program.blocked.insert(KEY);
                },
                Err(R::Blocked),
            ),
            (
                "an unauthorised second key does not open",
                |s| {
                    sequence(s, false);
                    s.previous = Some((OTHER_KEY, Some(KEY_GROUP), s.at - secs(30)));
                    s.cylinder_program.key_groups.clear();
                },
                Err(R::NotAdmitted),
            ),
        ]);
    }

    fn delay_15(s: &mut Scenario) {
        s.cylinder.factory.delay_lock_minutes = Some(15);
    }

    #[test]
    fn delay_lock() {
        use Refusal as R;
        check(vec![
            (
                "activation start: 14:59 into the delay",
                |s| {
                    delay_15(s);
                    between(s, "2025-06-04T11:45:01Z", "2025-06-05T00:00:00Z");
                },
                Err(R::DelayLock {
                    opens_at: utc("2025-06-04T12:00:01Z"),
                }),
            ),
            (
                "activation start: the delay has passed",
                |s| {
                    delay_15(s);
                    between(s, "2025-06-04T11:45:00Z", "2025-06-05T00:00:00Z");
                },
                Ok(()),
            ),
            (
                "activation start: before the configured start",
                |s| {
                    delay_15(s);
                    between(s, "2025-06-04T12:00:01Z", "2025-06-05T00:00:00Z");
                },
                Err(R::BeforeValidityStart {
                    starts_at: utc("2025-06-04T12:15:01Z"),
                }),
            ),
            (
                "activation end: extended by the delay",
                |s| {
                    delay_15(s);
                    between(s, "2025-06-01T00:00:00Z", "2025-06-04T11:45:01Z");
                },
                Ok(()),
            ),
            (
                "activation end: the extension is over",
                |s| {
                    delay_15(s);
                    between(s, "2025-06-01T00:00:00Z", "2025-06-04T11:45:00Z");
                },
                Err(R::AfterValidityEnd { ended_at: utc(NOW) }),
            ),
            (
                "activation end without delay lock",
                |s| between(s, "2025-06-01T00:00:00Z", "2025-06-04T11:45:01Z"),
                Err(R::AfterValidityEnd {
                    ended_at: utc("2025-06-04T11:45:01Z"),
                }),
            ),
            (
                "revalidated 14:59 ago",
                |s| {
                    delay_15(s);
                    revalidation(s, 1, false, "2025-06-04T11:45:01Z");
                },
                Err(R::DelayLock {
                    opens_at: utc("2025-06-04T12:00:01Z"),
                }),
            ),
            (
                "revalidated 15 min ago",
                |s| {
                    delay_15(s);
                    revalidation(s, 1, false, "2025-06-04T11:45:00Z");
                },
                Ok(()),
            ),
            (
                "revalidation expiry extended by the delay",
                |s| {
                    delay_15(s);
                    revalidation(s, 1, false, "2025-06-04T10:45:01Z");
                },
                Ok(()),
            ),
            (
                "revalidation expired after interval and delay",
                |s| {
                    delay_15(s);
                    revalidation(s, 1, false, "2025-06-04T10:45:00Z");
                },
                Err(R::RevalidationExpired {
                    expired_at: utc(NOW),
                }),
            ),
            (
                "revalidated just now, no delay lock",
                |s| revalidation(s, 1, false, NOW),
                Ok(()),
            ),
            (
                "the delay lock does not touch an always-active key",
                delay_15,
                Ok(()),
            ),
            (
                "nor a normal key",
                |s| {
                    s.normal();
                    delay_15(s);
                    revalidation(s, 1, false, NOW);
                },
                Ok(()),
            ),
        ]);
    }

    #[test]
    fn online_open() {
        use Refusal as R;
        check(vec![
            (
                "cylinder requires it, never updated online",
                |s| s.cylinder.factory.online_open = true,
                Err(R::OnlineOpenRequired),
            ),
            (
                "cylinder requires it, updated 30 s ago",
                |s| {
                    s.cylinder.factory.online_open = true;
                    s.clock.last_online_update = Some(s.at - secs(30));
                },
                Ok(()),
            ),
            (
                "cylinder requires it, updated 60 s ago",
                |s| {
                    s.cylinder.factory.online_open = true;
                    s.clock.last_online_update = Some(s.at - secs(60));
                },
                Ok(()),
            ),
            (
                "cylinder requires it, updated 61 s ago",
                |s| {
                    s.cylinder.factory.online_open = true;
                    s.clock.last_online_update = Some(s.at - secs(61));
                },
                Err(R::OnlineOpenRequired),
            ),
            (
                "an update after this instant is not 'just before'",
                |s| {
                    s.cylinder.factory.online_open = true;
                    s.clock.last_online_update = Some(s.at + secs(1));
                },
                Err(R::OnlineOpenRequired),
            ),
            (
                "cylinder requires it, override key",
                |s| {
                    s.cylinder.factory.online_open = true;
                    s.key.override_key = true;
                },
                Ok(()),
            ),
            (
                "key requires it, never updated online",
                |s| s.key.online_open = true,
                Err(R::OnlineOpenRequired),
            ),
            (
                "key requires it, updated 10 s ago",
                |s| {
                    s.key.online_open = true;
                    s.clock.last_online_update = Some(s.at - secs(10));
                },
                Ok(()),
            ),
            (
                "an override key does not escape its own requirement",
                |s| {
                    s.key.online_open = true;
                    s.key.override_key = true;
                    s.cylinder.factory.online_open = true;
                },
                Err(R::OnlineOpenRequired),
            ),
            (
                "the online open refusal comes before the sequence lock",
                |s| {
                    s.cylinder.factory.online_open = true;
                    sequence(s, false);
                },
                Err(R::OnlineOpenRequired),
            ),
        ]);
    }

    /// With several rules broken, the first in the order of `DOMAIN.md` §2 is reported.
    #[test]
    fn the_first_refusal_in_rule_order_wins() {
        use Refusal as R;
        // Each edit breaks one rule; the table lists them in rule order.
        let breakers: Vec<(Edit, Refusal)> = vec![
            (|s| s.side = Side::B, R::NoSuchSide { side: Side::B }),
            (|s| s.key.cutting = None, R::CuttingDoesNotFit),
            (
                |s| s.program.activation = Activation::Inactive,
                R::KeyInactive,
            ),
            (
                |s| revalidation(s, 1, false, "2025-06-01T00:00:00Z"),
                // 1 h interval plus the 15 min delay lock a later row sets.
                R::RevalidationExpired {
                    expired_at: utc("2025-06-01T01:15:00Z"),
                },
            ),
            (
                |s| pin(s, 1, None),
                R::PinValidationExpired { expired_at: None },
            ),
            (|s| s.cylinder_program.key_groups.clear(), R::NotAdmitted),
            (
                |s| {
                    s.cylinder_program.blocked.insert(KEY);
                },
                R::Blocked,
            ),
            (|s| s.program.access.clear(), R::NotInKeyAccessList),
            (
                |s| s.program.schedule = Some(windows(vec![])),
                R::OutsideSchedule {
                    local_time: local("2025-06-04T14:00:00"),
                },
            ),
            (
                |s| {
                    // The delay lock holds back a key whose dates start 5 minutes ago.
                    s.cylinder.factory.delay_lock_minutes = Some(15);
                    s.program.activation = Activation::Between {
                        from: s.at - TimeDelta::minutes(5),
                        until: s.at + TimeDelta::days(1),
                    };
                },
                R::DelayLock {
                    opens_at: utc("2025-06-04T12:10:00Z"),
                },
            ),
            (
                |s| s.cylinder.factory.online_open = true,
                R::OnlineOpenRequired,
            ),
            (|s| sequence(s, false), R::SequenceLockAwaitingSecondKey),
        ];
        // Breaking rule i and every later rule reports rule i.
        for first in 0..breakers.len() {
            let mut s = Scenario::new();
            // Apply later breakers first so that earlier edits win where they overlap
            // (the inactive setting replaces the delay lock's dates).
            for (edit, _) in breakers[first..].iter().rev() {
                edit(&mut s);
            }
            assert_eq!(s.run(), Err(breakers[first].1.clone()), "rule {first}");
        }
    }

    #[test]
    fn refusals_serialise_and_read_as_sentences() {
        let cases = [
            (Refusal::NotAdmitted, r#"{"reason":"not_admitted"}"#),
            (
                Refusal::NoSuchSide { side: Side::B },
                r#"{"reason":"no_such_side","side":"B"}"#,
            ),
            (
                Refusal::ExceptedFromKeyGroup { key_group: 7 },
                r#"{"reason":"excepted_from_key_group","key_group":7}"#,
            ),
            (
                Refusal::SequenceLockAwaitingSecondKey,
                r#"{"reason":"sequence_lock_awaiting_second_key"}"#,
            ),
            (
                Refusal::PinValidationExpired { expired_at: None },
                r#"{"reason":"pin_validation_expired","expired_at":null}"#,
            ),
        ];
        for (refusal, json) in cases {
            assert_eq!(serde_json::to_string(&refusal).expect("serialise"), json);
            let back: Refusal = serde_json::from_str(json).expect("deserialise");
            assert_eq!(back, refusal);
        }
        assert_eq!(
            Refusal::NoSuchSide { side: Side::B }.to_string(),
            "the cylinder has no side B"
        );
        assert_eq!(
            Refusal::OutsideSchedule {
                local_time: local("2025-06-04T17:00:00")
            }
            .to_string(),
            "the key's schedule does not allow Wed 17:00:00 (local time at the cylinder)"
        );
        assert_eq!(
            Refusal::PinValidationExpired { expired_at: None }.to_string(),
            "the key's PIN validation has expired (the PIN has never been entered): \
             the holder must enter the PIN again"
        );
        assert!(
            Refusal::RevalidationExpired {
                expired_at: utc(NOW)
            }
            .to_string()
            .contains("2025-06-04 12:00:00 UTC")
        );
    }

    const DAYS: [Day; 7] = [
        Day::Monday,
        Day::Tuesday,
        Day::Wednesday,
        Day::Thursday,
        Day::Friday,
        Day::Saturday,
        Day::Sunday,
    ];
    const WEEK_MINUTES: u32 = 7 * 24 * 60;
    const ZONES: [&str; 8] = [
        "Europe/Berlin",
        "UTC",
        "America/New_York",
        "America/St_Johns",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Pacific/Kiritimati",
    ];

    fn at_week_minute(m: u32) -> (Day, NaiveTime) {
        let day = DAYS[(m / (24 * 60)) as usize];
        let minute = m % (24 * 60);
        (day, hm(minute / 60, minute % 60))
    }

    /// Windows that cover the week between consecutive cut points, cyclically.
    fn covering_windows(cuts: &BTreeSet<u32>) -> Vec<TimeWindow> {
        let cuts: Vec<u32> = cuts.iter().copied().collect();
        (0..cuts.len())
            .map(|i| {
                let (start_day, start) = at_week_minute(cuts[i]);
                let (end_day, end) = at_week_minute(cuts[(i + 1) % cuts.len()]);
                window(start_day, start, end_day, end)
            })
            .collect()
    }

    proptest! {
        /// A schedule whose general windows cover the whole week never refuses on
        /// schedule grounds, whatever the instant, zone, offset, generation and reach.
        #[test]
        fn whole_week_windows_never_refuse(
            seconds in 0i64..4_102_444_800, // 1970 to 2100
            zone in prop::sample::select(ZONES.as_slice()),
            offset in -720i32..=840,
            gen2 in any::<bool>(),
            via_group in any::<bool>(),
            cuts in prop::collection::btree_set(0u32..WEEK_MINUTES, 0..8),
            periods_elsewhere in any::<bool>(),
        ) {
            let mut s = Scenario::new();
            s.at = DateTime::from_timestamp(seconds, 0).expect("instant");
            s.base = zone;
            s.cylinder_program.time_zone_offset_minutes = offset;
            s.key.generation = Some(if gen2 { Generation::Gen2 } else { Generation::Gen1 });
            if via_group {
                s.program.access =
                    BTreeMap::from([(AccessTarget::CylinderGroup(CYLINDER_GROUP), None)]);
            }
            let general = if cuts.len() < 2 {
                match Schedule::whole_week() {
                    Schedule::MultipleTimeWindows { windows, .. } => windows,
                    Schedule::Basic { .. } => unreachable!("whole_week has windows"),
                }
            } else {
                covering_windows(&cuts)
            };
            let schedule = Schedule::MultipleTimeWindows {
                windows: general,
                // Periods at another cylinder change nothing here.
                per_cylinder: if periods_elsewhere { afternoon_at(CYLINDER + 1) } else { Vec::new() },
            };
            // Only schedules the model accepts (not all cuts on one day).
            prop_assume!(schedule.validate("schedule").is_empty());
            s.program.schedule = Some(schedule);
            prop_assert_eq!(s.run(), Ok(()));
        }
    }
}
