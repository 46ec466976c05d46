//! Kubernetes Events on the objects the operator reconciles (`events.k8s.io/v1`), with repeats
//! counted in a series as client-go counts them: the same object, reason, action and type
//! within six minutes patches the first event's `series` instead of creating another.
//!
//! Written here rather than taken from kube-runtime's `Recorder`, which remembers a full copy
//! of every event (and of its key) for those six minutes and sweeps them all on every publish:
//! a cold start of 10,000 accounts, one `Created` event each, held about 40 MiB of events at
//! its peak (heaptrack) and scanned the whole map 10,000 times under one lock. What a repeat
//! needs is only the first event's name and the count so far.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

/// How long an event counts its repeats (client-go's window).
const REPEAT_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// How often the remembered events are swept of those past the window.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(60);
/// At most this many events are remembered (about 100 bytes each); past it, a repeat is
/// published as an event of its own until a sweep makes room.
const REMEMBERED_CAP: usize = 100_000;

/// What one event says, as the operator publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

/// Events published within the window, by what makes a later one a repeat.
struct Recent {
    by_key: HashMap<RepeatKey, Published>,
    swept: Timestamp,
}

impl Recent {
    fn new(now: Timestamp) -> Self {
        Recent {
            by_key: HashMap::new(),
            swept: now,
        }
    }

    /// Whether `key` repeats an event of the window; sweeps the expired ones once a minute.
    fn plan(&mut self, key: &RepeatKey, now: Timestamp) -> Publication {
        if self.swept + SWEEP_EVERY <= now {
            self.by_key.retain(|_, p| p.last + REPEAT_WINDOW > now);
            self.swept = now;
        }
        match self.by_key.get(key) {
            Some(p) if p.last + REPEAT_WINDOW > now => Publication::Repeat {
                name: p.name.clone(),
                count: p.count + 1,
            },
            _ => Publication::Create,
        }
    }

    fn remember(&mut self, key: RepeatKey, name: String, count: i32, now: Timestamp) {
        if self.by_key.len() < REMEMBERED_CAP || self.by_key.contains_key(&key) {
            let last = now;
            self.by_key.insert(key, Published { name, count, last });
        }
    }
}

/// The object an event is about, exactly (uid, namespace, name), and a hash of the rest of
/// what makes two events the same.
#[derive(Hash, PartialEq, Eq)]
struct RepeatKey {
    regarding: String,
    what: u64,
}

struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// What publishing does: create an event, or count a repeat on the event `name`.
#[derive(Debug, PartialEq, Eq)]
enum Publication {
    Create,
    Repeat { name: String, count: i32 },
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        EventRecorder {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Mutex::new(Recent::new(Timestamp::now())),
        }
    }

    /// Publishes `occurrence` on the object `regarding`: a new event, or the next count of the
    /// same event within the window (a new one when that event is gone from the API server).
    pub async fn publish(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = repeat_key(occurrence, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let planned = self.locked().plan(&key, now);
        if let Publication::Repeat { name, count } = planned {
            let series = serde_json::json!({ "series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    self.locked().remember(key, name, count, now);
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.new_event(occurrence, regarding, now);
        let created = events.create(&PostParams::default(), &event).await?;
        let name = created.metadata.name.unwrap_or_default();
        self.locked().remember(key, name, 1, now);
        Ok(())
    }

    fn new_event(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Event {
        let kind = if occurrence.warning {
            "Warning"
        } else {
            "Normal"
        };
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(kind.to_string()),
            reason: Some(occurrence.reason.clone()),
            action: Some(occurrence.reason.clone()),
            note: Some(fitted_note(&occurrence.note)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    /// The map behind the lock; a panic while holding it left only whole entries.
    fn locked(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The events API refuses a note over 1 KiB (the whole event with it): a longer one is cut
/// at a character boundary, marked as cut.
const MAX_NOTE_BYTES: usize = 1024;

fn fitted_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    const CUT: &str = " [...]";
    let mut end = MAX_NOTE_BYTES - CUT.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &note[..end])
}

/// Two events are the same, as client-go counts them, when they are about the same object with
/// the same type, reason and action; the note of a repeat is not compared (the first one's
/// stays on the event).
fn repeat_key(occurrence: &Occurrence, regarding: &ObjectReference) -> RepeatKey {
    let mut what = DefaultHasher::new();
    (occurrence.warning, &occurrence.reason).hash(&mut what);
    (&regarding.kind, &regarding.api_version).hash(&mut what);
    RepeatKey {
        regarding: format!(
            "{}/{}/{}",
            regarding.uid.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        ),
        what: what.finish(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_note_is_cut_to_what_the_events_api_takes() {
        let short = "banned: spam";
        assert_eq!(super::fitted_note(short), short);
        let long = "é".repeat(700); // 1400 bytes
        let fitted = super::fitted_note(&long);
        assert!(fitted.len() <= super::MAX_NOTE_BYTES, "{}", fitted.len());
        assert!(fitted.ends_with(" [...]"));
        assert!(long.starts_with(fitted.trim_end_matches(" [...]")));
    }

    use super::*;

    fn occurrence(reason: &str, note: &str) -> Occurrence {
        Occurrence {
            warning: false,
            reason: reason.into(),
            note: note.into(),
        }
    }

    fn object(uid: &str, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("librechat.ai/v1alpha1".into()),
            kind: Some("LibreChatUser".into()),
            namespace: Some("team-a".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_repeat_within_the_window_counts_on_the_first_event() {
        let t0 = Timestamp::now();
        let mut recent = Recent::new(t0);
        let key = || repeat_key(&occurrence("PasswordRotated", "one"), &object("u1", "jane"));
        assert_eq!(recent.plan(&key(), t0), Publication::Create);
        recent.remember(key(), "jane.1".into(), 1, t0);
        let later = t0 + SignedDuration::from_mins(5);
        let repeat = Publication::Repeat {
            name: "jane.1".into(),
            count: 2,
        };
        // The note of a repeat is not compared, as client-go does not compare it.
        let other_note = repeat_key(&occurrence("PasswordRotated", "two"), &object("u1", "jane"));
        assert_eq!(recent.plan(&other_note, later), repeat);
        recent.remember(key(), "jane.1".into(), 2, later);
        let after_window = later + REPEAT_WINDOW;
        assert_eq!(recent.plan(&key(), after_window), Publication::Create);
    }

    #[test]
    fn another_object_or_reason_is_another_event() {
        let t0 = Timestamp::now();
        let mut recent = Recent::new(t0);
        let jane = object("u1", "jane");
        recent.remember(
            repeat_key(&occurrence("Created", "n"), &jane),
            "jane.1".into(),
            1,
            t0,
        );
        let same_name_new_uid = object("u2", "jane");
        for key in [
            repeat_key(&occurrence("Created", "n"), &same_name_new_uid),
            repeat_key(&occurrence("Banned", "n"), &jane),
            repeat_key(
                &Occurrence {
                    warning: true,
                    ..occurrence("Created", "n")
                },
                &jane,
            ),
        ] {
            assert_eq!(recent.plan(&key, t0), Publication::Create);
        }
    }

    #[test]
    fn expired_events_are_swept_and_the_memory_is_capped() {
        let t0 = Timestamp::now();
        let mut recent = Recent::new(t0);
        for i in 0..REMEMBERED_CAP + 10 {
            let key = repeat_key(&occurrence("Created", ""), &object(&i.to_string(), "u"));
            recent.remember(key, format!("u.{i}"), 1, t0);
        }
        assert_eq!(recent.by_key.len(), REMEMBERED_CAP);
        let probe = repeat_key(&occurrence("Created", ""), &object("x", "x"));
        recent.plan(&probe, t0 + REPEAT_WINDOW);
        assert!(
            recent.by_key.is_empty(),
            "a sweep past the window forgets them all"
        );
    }
}
