//! Reading values stored by older builds. bincode is not self-describing: a type that gained a
//! field cannot tell an older, shorter record by itself, and one nested in another record
//! (`AgentOptions` in an `AgentSpec`) would read its neighbour's bytes as the new field. So the
//! codec tells the types which format version it is reading (the record's version byte), and a
//! type that changed decodes an older version through its older layout.
//!
//! | format | change |
//! | --- | --- |
//! | 1 | the first |
//! | 2 | `AgentOptions::workshop_tools` |

use std::cell::Cell;

/// The format version this build writes.
pub const CURRENT_FORMAT: u8 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT: u8 = 1;

thread_local! {
    static READING: Cell<u8> = const { Cell::new(CURRENT_FORMAT) };
}

/// The format version being decoded on this thread (the current one outside `reading_format`).
pub fn reading() -> u8 {
    READING.with(Cell::get)
}

/// Run `f` (a decode) with `version` as the format being read, restored afterwards even if `f`
/// panics.
pub fn reading_format<T>(version: u8, f: impl FnOnce() -> T) -> T {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            READING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(READING.with(|r| r.replace(version)));
    f()
}
