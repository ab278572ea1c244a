//! A long history written straight into a stopped daemon's database through the daemon's
//! own store and writer: a million changes in seconds rather than through a million
//! requests.

use std::path::Path;
use std::sync::Arc;

use compartmentctl::wire::Role;

/// Writes `count` events into `org`'s feed straight into the stopped daemon's database,
/// each a change of `email`'s role between viewer and readonly: the host's history, made
/// in seconds instead of through a million requests. Returns the last event's sequence
/// number.
pub fn add_history(state_dir: &Path, org: &str, email: &str, count: usize) -> u64 {
    use compartmentd::store::{Changes as _, Reader as _, Store};
    let store = Arc::new(Store::open(state_dir).unwrap());
    let clock = Arc::new(compartmentd::clock::SystemClock);
    let (writer, thread) = compartmentd::writer::Writer::spawn(store, clock).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (org, email) = (org.to_owned(), email.to_owned());
    const PER_COMMIT: usize = 20_000;
    let mut last = 0;
    for chunk in 0..count.div_ceil(PER_COMMIT) {
        let n = PER_COMMIT.min(count - chunk * PER_COMMIT);
        let (org, email) = (org.clone(), email.clone());
        last = runtime
            .block_on(writer.write(move |txn, _| {
                for _ in 0..n {
                    let old = txn.membership(&org, &email)?.unwrap();
                    let mut new = old.clone();
                    new.role = match old.role {
                        Role::Viewer => Role::Readonly,
                        _ => Role::Viewer,
                    };
                    txn.put_membership(&org, &email, &new, Some(&old))?;
                }
                Ok::<_, compartmentd::rules::RuleError>(txn.last_event_seq()?)
            }))
            .unwrap();
    }
    drop(writer);
    thread.join().unwrap();
    last
}
