//! cgroup v2 ids → paths.
//!
//! The kernel reports the cgroup v2 id of the connecting task (`bpf_get_current_cgroup_id`):
//! the kernfs node id of the cgroup, which is also the inode number of its directory in any
//! cgroup2 mount. Ids are handed out in increasing order and never reused, so an id the
//! resolver has never seen and that is larger than every id of its last scan belongs to a
//! cgroup created since, which is worth a rescan at once.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ProcessError;

/// Where the mount table of our mount namespace is read from.
pub const PROC_SELF_MOUNTS: &str = "/proc/self/mounts";

/// Filesystem type of the cgroup v2 hierarchy in the mount table.
const CGROUP2_FSTYPE: &str = "cgroup2";

/// Finds where the cgroup v2 hierarchy is mounted, from [`PROC_SELF_MOUNTS`]. On a hybrid
/// host this is typically `/sys/fs/cgroup/unified`, on a unified one `/sys/fs/cgroup`.
///
/// # Errors
/// [`ProcessError::ReadMounts`] if the mount table cannot be read,
/// [`ProcessError::NoCgroup2Mount`] if it lists no cgroup2 filesystem.
pub fn cgroup2_mount() -> Result<PathBuf, ProcessError> {
    let mounts =
        fs::read_to_string(PROC_SELF_MOUNTS).map_err(|source| ProcessError::ReadMounts {
            path: PathBuf::from(PROC_SELF_MOUNTS),
            source,
        })?;
    parse_cgroup2_mount(&mounts)
}

/// The first cgroup2 mount point in mount-table text (the format of `/proc/self/mounts`).
///
/// Parsed here rather than with `procfs::mounts`, which does not undo the kernel's `\040`
/// escape for spaces in mount points.
///
/// # Errors
/// [`ProcessError::NoCgroup2Mount`] if no line has filesystem type `cgroup2`.
pub fn parse_cgroup2_mount(mounts: &str) -> Result<PathBuf, ProcessError> {
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == CGROUP2_FSTYPE).then(|| PathBuf::from(unescape_mount_field(target)))
        })
        .ok_or_else(|| ProcessError::NoCgroup2Mount {
            mounts: PathBuf::from(PROC_SELF_MOUNTS),
        })
}

/// Undoes the kernel's escaping of mount-table fields: space, tab, newline and backslash
/// appear as `\040`, `\011`, `\012`, `\134` (any `\` followed by three octal digits).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|digits| {
                digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'))
            });
        match octal.and_then(|value| u8::try_from(value).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Misses rescan the tree at most this often, unless the id is newer than the last scan.
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Most id → path entries kept. Entries of cgroups that disappeared go first.
pub const MAX_CACHED_PATHS: usize = 16_384;
/// Most ids remembered as not found.
const MAX_UNKNOWN_IDS: usize = 1_024;
/// Deepest directory walked below the root.
const MAX_DEPTH: usize = 64;

/// Maps cgroup v2 ids to paths relative to the cgroup2 root (`/system.slice/cron.service`,
/// `/` for the root), walking the mounted tree when it meets an id it does not know.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    paths: HashMap<u64, String>,
    /// Ids a scan looked for and did not find (the cgroup was already gone).
    unknown: HashSet<u64>,
    /// Largest id seen by the last scan.
    newest_id: u64,
    last_scan: Option<Instant>,
    /// Scans done, for tests.
    scans: u64,
}

impl CgroupResolver {
    /// A resolver for the cgroup2 hierarchy mounted at `root` (see [`cgroup2_mount`]). The
    /// tree is first walked on the first lookup.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            unknown: HashSet::new(),
            newest_id: 0,
            last_scan: None,
            scans: 0,
        }
    }

    /// The cgroup2 mount this resolver walks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup id of a cgroup directory: its inode number.
    ///
    /// # Errors
    /// Whatever `stat` on `path` fails with.
    pub fn id_of(path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.ino())
    }

    /// The path of cgroup `id` relative to the root, or `None` if no cgroup with that id
    /// exists (any more) or the tree was scanned too recently to look again.
    pub fn resolve(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        let newer = id > self.newest_id && !self.unknown.contains(&id);
        let due = self
            .last_scan
            .is_none_or(|at| at.elapsed() >= RESCAN_INTERVAL);
        if !newer && !due {
            return None;
        }
        self.rescan();
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        if self.unknown.len() >= MAX_UNKNOWN_IDS {
            self.unknown.clear();
        }
        self.unknown.insert(id);
        None
    }

    /// Walks the whole tree. Paths of cgroups that disappeared are kept while there is room:
    /// ids are never reused, and a late event may still name one.
    fn rescan(&mut self) {
        self.scans += 1;
        self.last_scan = Some(Instant::now());
        let mut fresh = HashMap::new();
        let mut newest = self.newest_id;
        match Self::id_of(&self.root) {
            Ok(id) => {
                fresh.insert(id, "/".to_owned());
                newest = newest.max(id);
            }
            Err(error) => {
                tracing::debug!(root = %self.root.display(), %error, "cannot stat the cgroup2 root");
                return;
            }
        }
        let mut stack = vec![(self.root.clone(), String::new(), 0usize)];
        while let Some((dir, relative, depth)) = stack.pop() {
            // A cgroup removed while we walk is not an error.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    continue;
                }
                let id = entry.ino();
                let path = format!("{relative}/{}", entry.file_name().to_string_lossy());
                newest = newest.max(id);
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), path.clone(), depth + 1));
                }
                if fresh.len() < MAX_CACHED_PATHS {
                    fresh.insert(id, path);
                }
            }
        }
        for (id, path) in self.paths.drain() {
            if fresh.len() >= MAX_CACHED_PATHS {
                break;
            }
            fresh.entry(id).or_insert(path);
        }
        self.paths = fresh;
        self.newest_id = newest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HYBRID: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
";

    const UNIFIED: &str = "\
/dev/nvme0n1p1 / ext4 rw,relatime,discard 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
";

    #[rstest]
    #[case::hybrid(HYBRID, "/sys/fs/cgroup/unified")]
    #[case::unified(UNIFIED, "/sys/fs/cgroup")]
    #[case::first_wins("none /a cgroup2 rw 0 0\nnone /b cgroup2 rw 0 0\n", "/a")]
    #[case::escaped_space("none /mnt/my\\040cgroups cgroup2 rw 0 0\n", "/mnt/my cgroups")]
    #[case::escaped_backslash_tab("none /mnt/a\\134b\\011c cgroup2 rw 0 0\n", "/mnt/a\\b\tc")]
    #[case::junk_lines_skipped("garbage\n\nnone /cg cgroup2 rw 0 0\n", "/cg")]
    fn finds_cgroup2_mount(#[case] mounts: &str, #[case] expected: &str) {
        match parse_cgroup2_mount(mounts) {
            Ok(path) => assert_eq!(path, PathBuf::from(expected)),
            Err(error) => panic!("{error}"),
        }
    }

    #[rstest]
    #[case::empty("")]
    #[case::v1_only("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")]
    #[case::name_not_type("cgroup2 /x tmpfs rw 0 0\n")]
    fn no_cgroup2_mount(#[case] mounts: &str) {
        match parse_cgroup2_mount(mounts) {
            Ok(path) => panic!("found {}", path.display()),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains("no cgroup v2 filesystem mounted"),
                    "{message}"
                );
                assert!(
                    message.contains("mount -t cgroup2 none /sys/fs/cgroup"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn this_machine_has_a_cgroup2_mount() {
        match cgroup2_mount() {
            Ok(root) => assert!(root.join("cgroup.procs").exists(), "{}", root.display()),
            Err(error) => panic!("{error}"),
        }
    }

    /// A uniquely named child cgroup under the real cgroup2 mount, removed on drop.
    struct TempCgroup {
        path: PathBuf,
    }

    impl TempCgroup {
        fn new(parent: &Path, tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!("imds-agent-test-{tag}-{}-{nanos}", std::process::id());
            let path = parent.join(name);
            if let Err(error) = fs::create_dir(&path) {
                panic!("mkdir {}: {error} (these tests need root)", path.display());
            }
            Self { path }
        }

        fn name(&self) -> String {
            self.path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        }

        fn id(&self) -> u64 {
            CgroupResolver::id_of(&self.path)
                .unwrap_or_else(|error| panic!("stat {}: {error}", self.path.display()))
        }
    }

    impl Drop for TempCgroup {
        fn drop(&mut self) {
            // A cgroup directory is removed with rmdir even though it lists files.
            if let Err(error) = fs::remove_dir(&self.path) {
                eprintln!("rmdir {}: {error}", self.path.display());
            }
        }
    }

    fn root() -> PathBuf {
        cgroup2_mount().unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn resolves_root_and_temp_cgroups() {
        let root = root();
        let parent = TempCgroup::new(&root, "resolve");
        let child = TempCgroup::new(&parent.path, "child");
        let mut resolver = CgroupResolver::new(root.clone());

        let root_id = CgroupResolver::id_of(&root).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(resolver.resolve(root_id).as_deref(), Some("/"));
        assert_eq!(
            resolver.resolve(parent.id()),
            Some(format!("/{}", parent.name()))
        );
        assert_eq!(
            resolver.resolve(child.id()),
            Some(format!("/{}/{}", parent.name(), child.name()))
        );
        // All three came from the first scan.
        assert_eq!(resolver.scans, 1);

        // Still known after the cgroup is gone and the tree was walked again: ids are never
        // reused, and a late event may name it.
        let child_id = child.id();
        let child_path = format!("/{}/{}", parent.name(), child.name());
        drop(child);
        assert_eq!(resolver.resolve(u64::MAX), None);
        assert_eq!(resolver.scans, 2);
        assert_eq!(resolver.resolve(child_id), Some(child_path));
    }

    #[test]
    fn new_cgroup_is_found_without_waiting() {
        let root = root();
        let mut resolver = CgroupResolver::new(root.clone());
        let first = TempCgroup::new(&root, "first");
        assert_eq!(
            resolver.resolve(first.id()),
            Some(format!("/{}", first.name()))
        );
        // Created after the scan: its id is newer, so it rescans at once, inside the
        // rate-limit interval.
        let second = TempCgroup::new(&root, "second");
        assert_eq!(
            resolver.resolve(second.id()),
            Some(format!("/{}", second.name()))
        );
        assert_eq!(resolver.scans, 2);
    }

    #[test]
    fn misses_are_rate_limited() {
        let mut resolver = CgroupResolver::new(root());
        // An id below anything real: never a cgroup.
        assert_eq!(resolver.resolve(0), None);
        assert_eq!(resolver.scans, 1);
        // Keep "now" inside the interval however slow this machine is.
        let pin = |resolver: &mut CgroupResolver| {
            resolver.last_scan = Instant::now().checked_add(Duration::from_secs(3600));
        };
        pin(&mut resolver);
        assert_eq!(resolver.resolve(0), None);
        assert_eq!(resolver.resolve(0), None);
        assert_eq!(
            resolver.scans, 1,
            "a known miss must not rescan within the interval"
        );
        // A vanished id newer than the last scan rescans once, then is remembered.
        let gone = u64::MAX;
        assert_eq!(resolver.resolve(gone), None);
        pin(&mut resolver);
        assert_eq!(resolver.resolve(gone), None);
        assert_eq!(resolver.scans, 2);
        resolver.last_scan = Instant::now().checked_sub(RESCAN_INTERVAL);
        assert_eq!(resolver.resolve(0), None);
        assert_eq!(resolver.scans, 3, "rescans once the interval has passed");
    }

    #[test]
    fn missing_root_resolves_nothing() {
        let mut resolver = CgroupResolver::new(PathBuf::from("/nonexistent/imds-agent-cgroup"));
        assert_eq!(resolver.resolve(1), None);
        assert!(CgroupResolver::id_of(resolver.root()).is_err());
    }
}
