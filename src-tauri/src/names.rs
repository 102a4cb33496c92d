//! Names the app makes up: room names people can read out, member ids, recording files.

/// `LiveLoop <title> <YYYY-MM-DD HH.MM.SS>.mkv` (UTC; characters that are awkward in file
/// names become `-`).
#[must_use]
pub fn recording_file_name(title: &str, unix_secs: u64) -> String {
    let safe: String = title
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    // A time past year 9999 (which i64 seconds cannot hold as a date) reads as the epoch.
    let at = i64::try_from(unix_secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "LiveLoop {safe} {:04}-{:02}-{:02} {:02}.{:02}.{:02}.mkv",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A fresh room name people can read out: three letters groups, e.g. `kfd-xqa-pwe`.
#[must_use]
pub fn new_room_name() -> String {
    let group = || -> String {
        (0..3)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect()
    };
    format!("{}-{}-{}", group(), group(), group())
}

/// A member id from the display name: its safe characters plus a random suffix (ids are unique
/// in a room; names are shown from the data channel).
#[must_use]
pub fn member_id(name: &str) -> String {
    let base: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    let base = if base.is_empty() {
        "guest".into()
    } else {
        base
    };
    format!("{base}-{:04x}", rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_say_when_and_where() {
        assert_eq!(
            recording_file_name("team-42", 1_795_329_997),
            "LiveLoop team-42 2026-11-22 06.46.37.mkv"
        );
        assert_eq!(
            recording_file_name("a/b:c", 0),
            "LiveLoop a-b-c 1970-01-01 00.00.00.mkv"
        );
    }

    #[test]
    fn urls_ids_and_names() {
        let id = member_id("Ann Lee!");
        assert!(id.starts_with("AnnLee-") && id.len() == 11, "{id}");
        assert!(member_id("!!!").starts_with("guest-"));
        let room = new_room_name();
        assert!(
            liveloop_proto::is_valid_id(&room) && room.len() == 11,
            "{room}"
        );
    }
}
