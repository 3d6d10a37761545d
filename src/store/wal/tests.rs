//! WAL tests on real files in a temporary directory.

use std::fs;
use std::path::{Path, PathBuf};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::*;
use crate::component::{AnyValue, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, any_value};

/// A batch of `spans` spans named after `id`, with a resource and an attribute, so that
/// batches differ from each other in content and size.
fn batch(id: u64, spans: u64) -> TraceBatch {
    let spans = (0..spans)
        .map(|j| Span {
            trace_id: id.to_be_bytes().repeat(2),
            span_id: j.to_be_bytes().to_vec(),
            name: format!("op-{id}-{j}"),
            start_time_unix_nano: 1_700_000_000_000_000_000 + j,
            end_time_unix_nano: 1_700_000_000_000_500_000 + j,
            attributes: vec![string_attr("http.route", &format!("/items/{j}"))],
            ..Default::default()
        })
        .collect();
    TraceBatch::measured(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string_attr("service.name", "checkout")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn options() -> WalOptions {
    WalOptions::default()
}

/// Options whose segments hold two `batch(_, 3)` records each.
fn small_segments() -> WalOptions {
    let record = record::record_len(&batch(1, 3));
    WalOptions {
        segment_bytes: record * 2 + record / 2,
        ..WalOptions::default()
    }
}

fn replay_all(wal: &Wal) -> Vec<(Seq, TraceBatch)> {
    wal.replay()
        .collect::<Result<Vec<_>, _>>()
        .expect("replay should read every record")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir)
        .expect("wal dir should list")
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

fn append_all(wal: &mut Wal, batches: &[TraceBatch]) -> Vec<Seq> {
    batches
        .iter()
        .map(|b| wal.append(b).expect("append should succeed"))
        .collect()
}

#[test]
fn append_then_reopen_replays_every_batch_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batches: Vec<_> = (1..=5).map(|i| batch(i, i)).collect();
    let mut wal = open_retrying(dir.path(), options()).expect("open");
    assert!(replay_all(&wal).is_empty());
    let seqs = append_all(&mut wal, &batches);
    assert_eq!(seqs, (1..=5).map(Seq).collect::<Vec<_>>());
    drop(wal);

    let wal = open_retrying(dir.path(), options()).expect("reopen");
    let replayed = replay_all(&wal);
    let expected: Vec<_> = seqs.into_iter().zip(batches).collect();
    assert_eq!(replayed, expected);
    assert_eq!(replayed[4].1.span_count(), 5);
    assert_eq!(wal.recovery().records, 5);
    assert_eq!(wal.recovery().uncommitted_records, 5);
    assert_eq!(wal.recovery().truncated_bytes, 0);
    assert!(wal.recovery().corruptions.is_empty());
}

#[test]
fn replay_leaves_out_records_appended_after_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), options()).expect("open");
    wal.append(&batch(1, 2)).expect("append");
    drop(wal);
    let mut wal = open_retrying(dir.path(), options()).expect("reopen");
    wal.append(&batch(2, 2)).expect("append");
    let replayed = replay_all(&wal);
    assert_eq!(replayed, vec![(Seq(1), batch(1, 2))]);
}

#[test]
fn byte_and_segment_counts_match_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), small_segments()).expect("open");
    append_all(&mut wal, &(1..=5).map(|i| batch(i, 3)).collect::<Vec<_>>());
    let files = segment_files(dir.path());
    let on_disk: u64 = files
        .iter()
        .map(|p| fs::metadata(p).expect("segment metadata").len())
        .sum();
    assert_eq!(files.len(), 3, "two records per segment");
    assert_eq!(wal.segment_count(), 3);
    assert_eq!(wal.bytes(), on_disk);
    assert_eq!(wal.bytes(), 5 * record::record_len(&batch(1, 3)));
}

#[test]
fn commit_deletes_only_fully_committed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), small_segments()).expect("open");
    let batches: Vec<_> = (1..=6).map(|i| batch(i, 3)).collect();
    append_all(&mut wal, &batches);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);

    // Segment 2 holds records 3 and 4: committing 3 must keep it.
    assert_eq!(wal.commit(Seq(3)).expect("commit"), 1);
    assert_eq!(segment_files(dir.path()), files[1..].to_vec());
    assert_eq!(wal.segment_count(), 2);
    assert_eq!(wal.bytes(), 4 * record::record_len(&batches[0]));
    drop(wal);

    // Record 3 is committed although its segment stays: it is not replayed.
    let mut wal = open_retrying(dir.path(), small_segments()).expect("reopen");
    let replayed: Vec<_> = replay_all(&wal).into_iter().map(|(s, _)| s).collect();
    assert_eq!(replayed, vec![Seq(4), Seq(5), Seq(6)]);
    assert_eq!(wal.committed(), Seq(3));

    // Committing everything deletes the active segment too; appends continue.
    assert_eq!(wal.commit(Seq(6)).expect("commit"), 2);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(wal.bytes(), 0);
    assert_eq!(wal.append(&batch(7, 1)).expect("append"), Seq(7));
    assert_eq!(wal.segment_count(), 1);
}

#[test]
fn commit_is_idempotent_and_refuses_the_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), small_segments()).expect("open");
    append_all(&mut wal, &(1..=3).map(|i| batch(i, 3)).collect::<Vec<_>>());
    assert_eq!(wal.commit(Seq(2)).expect("commit"), 1);
    assert_eq!(wal.commit(Seq(2)).expect("same commit"), 0);
    assert_eq!(wal.commit(Seq(1)).expect("older commit"), 0);
    let err = wal.commit(Seq(4)).expect_err("seq 4 was never appended");
    assert!(matches!(
        err,
        WalError::CommitAhead {
            up_to: Seq(4),
            last: Seq(3)
        }
    ));
}

#[test]
fn reopen_continues_sequence_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), options()).expect("open");
    append_all(&mut wal, &[batch(1, 1), batch(2, 1), batch(3, 1)]);
    drop(wal);
    let mut wal = open_retrying(dir.path(), options()).expect("reopen");
    assert_eq!(wal.next_seq(), Seq(4));
    assert_eq!(wal.append(&batch(4, 1)).expect("append"), Seq(4));

    // Even when every segment was committed and deleted, numbers are never reused.
    wal.commit(Seq(4)).expect("commit");
    assert!(segment_files(dir.path()).is_empty());
    drop(wal);
    let mut wal = open_retrying(dir.path(), options()).expect("reopen");
    assert!(replay_all(&wal).is_empty());
    assert_eq!(wal.append(&batch(5, 1)).expect("append"), Seq(5));
}

/// Writes three records in one segment and returns (segment path, offset of the last record).
fn three_records(dir: &Path) -> (PathBuf, u64) {
    let mut wal = open_retrying(dir, options()).expect("open");
    append_all(&mut wal, &[batch(1, 4), batch(2, 4), batch(3, 2)]);
    drop(wal);
    let path = segment_files(dir).remove(0);
    let last_offset = 2 * record::record_len(&batch(1, 4));
    (path, last_offset)
}

fn assert_first_two_survive(wal: &Wal) {
    let replayed = replay_all(wal);
    assert_eq!(
        replayed,
        vec![(Seq(1), batch(1, 4)), (Seq(2), batch(2, 4))],
        "every record before the damage should survive"
    );
}

#[test]
fn a_record_cut_at_any_byte_is_truncated_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, last_offset) = three_records(dir.path());
    let pristine = fs::read(&path).expect("read segment");
    for cut in last_offset + 1..pristine.len() as u64 {
        fs::write(&path, &pristine[..cut as usize]).expect("write cut segment");
        let mut wal = open_retrying(dir.path(), options()).expect("open with torn tail");
        let rec = wal.recovery();
        assert_eq!(rec.truncated_bytes, cut - last_offset, "cut at {cut}");
        let tail = rec
            .torn_tail
            .as_ref()
            .expect("torn tail should be reported");
        assert_eq!((tail.offset, &tail.path), (last_offset, &path));
        assert_eq!(tail.reason, Damage::Partial);
        assert!(rec.corruptions.is_empty());
        assert_first_two_survive(&wal);
        assert_eq!(fs::metadata(&path).expect("metadata").len(), last_offset);
        assert_eq!(wal.bytes(), last_offset);

        // The WAL appends cleanly after the cut, and the next open finds no damage.
        assert_eq!(wal.append(&batch(9, 1)).expect("append"), Seq(3));
        drop(wal);
        let wal = open_retrying(dir.path(), options()).expect("reopen");
        assert!(wal.recovery().torn_tail.is_none(), "cut at {cut}");
        assert_eq!(replay_all(&wal).len(), 3);
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, last_offset) = three_records(dir.path());
    let pristine = fs::read(&path).expect("read segment");
    for at in last_offset as usize..pristine.len() {
        let mut damaged = pristine.clone();
        damaged[at] ^= 0x40;
        fs::write(&path, &damaged).expect("write damaged segment");
        let wal = open_retrying(dir.path(), options()).expect("open with damaged tail");
        let rec = wal.recovery();
        let tail = rec.torn_tail.as_ref().expect("damage should be found");
        assert_eq!(tail.offset, last_offset, "flip at {at}");
        assert_eq!(rec.truncated_bytes, pristine.len() as u64 - last_offset);
        assert_first_two_survive(&wal);
    }
}

#[test]
fn corruption_in_an_older_segment_skips_its_rest_and_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(dir.path(), small_segments()).expect("open");
    append_all(&mut wal, &(1..=6).map(|i| batch(i, 3)).collect::<Vec<_>>());
    drop(wal);
    let files = segment_files(dir.path());
    let record = record::record_len(&batch(1, 3));
    // Damage record 3, the first of the second segment, in its payload.
    let mut bytes = fs::read(&files[1]).expect("read");
    bytes[40] ^= 0xff;
    fs::write(&files[1], &bytes).expect("write");

    let mut wal = open_retrying(dir.path(), small_segments()).expect("open despite corruption");
    let rec = wal.recovery();
    assert!(rec.torn_tail.is_none());
    assert_eq!(rec.corruptions.len(), 1);
    let corruption = &rec.corruptions[0];
    assert_eq!((&corruption.path, corruption.offset), (&files[1], 0));
    assert_eq!(corruption.reason, Damage::BadChecksum);
    assert_eq!(corruption.skipped_bytes, 2 * record);
    let err = corruption.to_error().to_string();
    assert!(
        err.contains(&files[1].display().to_string()) && err.contains("offset 0"),
        "{err}"
    );
    let seqs: Vec<_> = replay_all(&wal).into_iter().map(|(s, _)| s.0).collect();
    assert_eq!(seqs, vec![1, 2, 5, 6]);
    // The damaged file is kept until what it held is committed.
    assert_eq!(fs::metadata(&files[1]).expect("kept").len(), 2 * record);
    assert_eq!(wal.commit(Seq(4)).expect("commit"), 2);
    assert_eq!(segment_files(dir.path()), files[2..].to_vec());
}

#[test]
fn damage_inside_the_last_segment_is_not_mistaken_for_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = three_records(dir.path());
    let mut bytes = fs::read(&path).expect("read");
    bytes[30] ^= 0xff; // inside record 1's payload; records 2 and 3 follow intact
    fs::write(&path, &bytes).expect("write");
    let mut wal = open_retrying(dir.path(), options()).expect("open");
    let rec = wal.recovery();
    assert!(
        rec.torn_tail.is_none(),
        "a valid record follows: not a torn write"
    );
    assert_eq!(rec.corruptions.len(), 1);
    assert_eq!(rec.corruptions[0].skipped_bytes, bytes.len() as u64);
    assert_eq!(
        fs::read(&path).expect("read"),
        bytes,
        "damaged file kept as is"
    );
    // New records go to a fresh segment, after every number the damaged one may hold.
    let seq = wal.append(&batch(4, 1)).expect("append");
    assert!(seq > Seq(1));
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(wal);
    let wal = open_retrying(dir.path(), options()).expect("reopen");
    assert_eq!(replay_all(&wal), vec![(seq, batch(4, 1))]);
}

#[test]
fn wal_full_at_the_limit_until_a_commit_frees_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = record::record_len(&batch(1, 3));
    let limited = WalOptions {
        max_bytes: record * 3,
        ..small_segments()
    };
    let mut wal = open_retrying(dir.path(), limited.clone()).expect("open");
    append_all(&mut wal, &[batch(1, 3), batch(2, 3), batch(3, 3)]);
    let err = wal.append(&batch(4, 3)).expect_err("the wal is full");
    assert!(
        matches!(err, WalError::WalFull { bytes, max } if bytes == 3 * record && max == 3 * record)
    );
    assert!(err.is_retryable());
    assert_eq!(wal.next_seq(), Seq(4), "a refused append uses no number");
    assert_eq!(wal.bytes(), 3 * record);

    wal.commit(Seq(2)).expect("commit frees the first segment");
    assert_eq!(wal.append(&batch(4, 3)).expect("room again"), Seq(4));
    drop(wal);

    // The limit holds across a restart.
    let mut wal = open_retrying(dir.path(), limited).expect("reopen");
    assert_eq!(wal.bytes(), 2 * record);
    assert!(matches!(
        wal.append(&batch(5, 6)),
        Err(WalError::WalFull { .. })
    ));
}

#[test]
fn a_record_larger_than_the_whole_wal_is_refused_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = open_retrying(
        dir.path(),
        WalOptions {
            max_bytes: 100,
            ..options()
        },
    )
    .expect("open");
    let err = wal.append(&batch(1, 10)).expect_err("too large");
    assert!(matches!(err, WalError::RecordTooLarge { max: 100, .. }));
    assert!(!err.is_retryable());
}

#[test]
fn a_killed_process_loses_nothing_it_appended() {
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval(std::time::Duration::from_secs(3600)),
        FsyncPolicy::Always,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions {
            fsync,
            ..small_segments()
        };
        let mut wal = open_retrying(dir.path(), opts.clone()).expect("open");
        let batches: Vec<_> = (1..=7).map(|i| batch(i, 3)).collect();
        let seqs = append_all(&mut wal, &batches);
        wal.commit(Seq(2)).expect("commit");
        // No close, no drop: as if the process had been killed here.
        wal.simulate_kill();

        let wal = open_retrying(dir.path(), opts).expect("reopen");
        let expected: Vec<_> = seqs.into_iter().zip(batches).skip(2).collect();
        assert_eq!(replay_all(&wal), expected, "{fsync:?}");
        assert_eq!(wal.recovery().truncated_bytes, 0);
    }
}

#[test]
fn a_second_wal_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open_retrying(dir.path(), options()).expect("open");
    let err = open_retrying(dir.path(), options())
        .err()
        .expect("the directory is locked");
    assert!(matches!(err, WalError::Locked { .. }), "{err}");
    drop(wal);
    open_retrying(dir.path(), options()).expect("the lock is released on drop");
}

#[test]
fn unknown_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("notes.txt"), b"operator notes").expect("write");
    fs::write(dir.path().join("abc.wal"), b"not a segment name").expect("write");
    let mut wal = open_retrying(dir.path(), options()).expect("open");
    assert_eq!(wal.append(&batch(1, 1)).expect("append"), Seq(1));
    assert_eq!(wal.segment_count(), 1);
}

const CHILD_DIR_ENV: &str = "SPANLINE_WAL_TEST_CHILD_DIR";
const KILL_TEST: &str = "store::wal::tests::a_sigkilled_writer_loses_nothing_it_acknowledged";

/// The writer's side of the kill test: appends (and now and then commits) until killed,
/// printing each sequence number once `append` or `commit` has returned.
fn run_writer(dir: &Path) {
    let mut wal = open_retrying(dir, small_segments()).expect("child open");
    for id in 1..=100_000u64 {
        let seq = wal.append(&batch(id, 1 + id % 5)).expect("child append");
        println!("acked {}", seq.0);
        if id % 40 == 0 {
            wal.commit(Seq(id - 10)).expect("child commit");
            println!("committed {}", id - 10);
        }
    }
}

#[test]
fn a_sigkilled_writer_loses_nothing_it_acknowledged() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        run_writer(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", KILL_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (mut acked, mut committed) = (Vec::new(), 0u64);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("writer output");
        if let Some(seq) = line.strip_prefix("acked ") {
            acked.push(seq.parse::<u64>().expect("seq"));
        } else if let Some(seq) = line.strip_prefix("committed ") {
            committed = seq.parse().expect("seq");
        }
        if acked.len() >= 300 {
            break;
        }
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    assert!(acked.len() >= 300, "the writer stopped early");

    let wal = open_retrying(dir.path(), small_segments()).expect("open after kill");
    assert!(wal.committed().0 >= committed);
    let replayed = replay_all(&wal);
    let seqs: Vec<u64> = replayed.iter().map(|(s, _)| s.0).collect();
    let first = wal.committed().0 + 1;
    assert_eq!(
        seqs.first().copied().unwrap_or(first),
        first,
        "replay starts after the commit"
    );
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gaps");
    for seq in acked.iter().filter(|s| **s >= first) {
        assert!(seqs.contains(seq), "acknowledged record {seq} lost");
    }
    for (seq, got) in &replayed {
        assert_eq!(*got, batch(seq.0, 1 + seq.0 % 5), "record {seq} intact");
    }
}

/// Opens the WAL with its metrics recorded into a private registry.
fn open_recorded(dir: &Path, opts: WalOptions) -> (Wal, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let wal = metrics::with_local_recorder(&recorder, || open_retrying(dir, opts)).expect("open");
    (wal, handle)
}

/// The value of the one sample whose line contains every needle.
fn metric(handle: &PrometheusHandle, needles: &[&str]) -> f64 {
    let text = handle.render();
    let line = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no sample with {needles:?} in:\n{text}"));
    let value = line.rsplit(' ').next().expect("a sample has a value");
    value.parse().expect("a sample value is a number")
}

#[test]
fn metrics_follow_size_replay_and_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, handle) = open_recorded(dir.path(), small_segments());
    append_all(&mut wal, &(1..=5).map(|i| batch(i, 3)).collect::<Vec<_>>());
    assert_eq!(
        metric(&handle, &[names::STORE_WAL_BYTES]),
        wal.bytes() as f64
    );
    assert_eq!(metric(&handle, &[names::STORE_WAL_SEGMENTS]), 3.0);
    wal.commit(Seq(2)).expect("commit");
    assert_eq!(metric(&handle, &[names::STORE_WAL_SEGMENTS]), 2.0);
    assert_eq!(
        metric(&handle, &[names::STORE_WAL_BYTES]),
        wal.bytes() as f64
    );
    drop(wal);

    // Cut 10 bytes off the last record, then reopen and replay.
    let last = segment_files(dir.path()).pop().expect("a segment");
    let len = fs::metadata(&last).expect("metadata").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(len - 10))
        .expect("cut the segment");
    let (wal, handle) = open_recorded(dir.path(), small_segments());
    let cut = wal.recovery().truncated_bytes;
    assert_eq!(cut, record::record_len(&batch(5, 3)) - 10);
    let truncated = metric(&handle, &[names::STORE_WAL_TRUNCATED_BYTES, "torn_tail"]);
    assert_eq!(truncated, cut as f64);
    assert_eq!(replay_all(&wal).len(), 2, "records 3 and 4 remain");
    assert_eq!(metric(&handle, &[names::STORE_WAL_REPLAYED_SPANS]), 6.0);
}

/// `Wal::open`, waiting out a lock that a child process spawned by another test may hold
/// for a moment (a fork shares the parent's open files until the child execs). A lock that
/// lasts is returned as the error.
fn open_retrying(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal, WalError> {
    let mut result = Wal::open(dir.as_ref(), options.clone());
    for _ in 0..50 {
        if !matches!(result, Err(WalError::Locked { .. })) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        result = Wal::open(dir.as_ref(), options.clone());
    }
    result
}
