//! That the indexes agree with what they index, checked through [`Reader`] alone, so that
//! it holds for every backend (the tests and `compartmentd check`).

use super::{change::due_key, spent_key, Millis, Reader, Result};

/// Checks that the secondary indexes agree with `memberships`, both ways (tests and,
/// later, `compartmentd check`). Linear in the number of memberships.
pub fn check_indexes(reader: &(impl Reader + ?Sized)) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut unmatched_pending: std::collections::HashSet<(String, String)> =
        reader.due_memberships(Millis::MAX)?.into_iter().collect();
    for org in reader.org_names()? {
        let mut admins = 0;
        for (email, membership) in reader.members(&org)? {
            if !reader.orgs_of(&email)?.contains(&org) {
                problems.push(format!("account_orgs lacks ({email}, {org})"));
            }
            admins += usize::from(membership.is_active_admin());
            if due_key(&membership).is_some()
                && !unmatched_pending.remove(&(org.clone(), email.clone()))
            {
                problems.push(format!("pending_by_expiry lacks ({org}, {email})"));
            }
        }
        let indexed = reader.active_admins(&org, usize::MAX)?;
        if indexed != admins {
            problems.push(format!(
                "org_admins holds {indexed} active admins of {org}, memberships {admins}"
            ));
        }
    }
    for (org, email) in unmatched_pending {
        problems.push(format!(
            "pending_by_expiry has ({org}, {email}) with no pending invitation"
        ));
    }
    check_feed_index(reader, &mut problems)?;
    for hash in reader.spent_tokens_due(Millis::MAX, usize::MAX)? {
        let spent = reader.token(&hash)?.and_then(|token| spent_key(&token));
        if spent.is_none() {
            let prefix: String = hash.0[..4].iter().map(|b| format!("{b:02x}")).collect();
            problems.push(format!(
                "spent_tokens names a token that is not spent ({prefix}…)"
            ));
        }
    }
    Ok(problems)
}

/// Every membership's event is filed under its organization, and the index files under an
/// organization only that organization's events and bindings' events.
fn check_feed_index(reader: &(impl Reader + ?Sized), problems: &mut Vec<String>) -> Result<()> {
    use std::collections::{HashMap, HashSet};
    let orgs: HashSet<String> = reader.org_names()?.into_iter().collect();
    let mut filed = HashSet::new();
    for org in &orgs {
        for (seq, _) in reader.org_events_after(org, 0, usize::MAX)? {
            filed.insert((org.clone(), seq));
        }
    }
    // Each event naming an organization, and each renaming (`org.renamed`, filed under the
    // new name, naming the old).
    let mut named = Vec::new();
    // Events of no organization (a binding's) are filed under the organizations of the
    // account they name, which the feed's index alone records.
    let mut unnamed = HashSet::new();
    let mut after = 0;
    loop {
        let batch = reader.events_after(after, 4096)?;
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        for (seq, event) in batch {
            match event.org {
                Some(org) => {
                    let previous = event.note.and_then(|note| note.previous_name);
                    named.push((seq, org, previous));
                }
                None => {
                    unnamed.insert(seq);
                }
            }
        }
        after = last;
    }
    // Where each event is filed now: under its organization's name, or the name it was
    // renamed to since (walked from the newest, so a name renamed twice ends at the last).
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut expected = HashSet::new();
    for (seq, org, previous) in named.into_iter().rev() {
        let now_named = renamed.get(&org).cloned().unwrap_or_else(|| org.clone());
        if let Some(previous) = previous {
            renamed.insert(previous, now_named.clone());
        }
        // A deleted organization's events are filed nowhere.
        if orgs.contains(&now_named) {
            expected.insert((now_named, seq));
        }
    }
    for (org, seq) in &expected {
        if !filed.contains(&(org.clone(), *seq)) {
            problems.push(format!("org_events lacks ({org}, {seq})"));
        }
    }
    for (org, seq) in &filed {
        if !unnamed.contains(seq) && !expected.contains(&(org.clone(), *seq)) {
            problems.push(format!("org_events files event {seq} under {org}"));
        }
    }
    Ok(())
}
