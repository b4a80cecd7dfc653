//! Feeds arbitrary bytes to the stream reader, as anyrecv would read them: the reader must
//! return records or an error, never panic, hang or allocate beyond the format's maxima
//! (libFuzzer's -rss_limit_mb and -malloc_limit_mb catch the last two).
#![no_main]

use anysend_stream::StreamReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = StreamReader::new(data) else { return };
    let mut n = 0usize;
    while let Ok(Some(frame)) = reader.next_frame() {
        // Every frame takes at least 12 bytes: a reader that makes no progress would spin here.
        n += 1;
        assert!(n <= data.len() / 12 + 1);
        let _ = anysend_stream::dump::frame_line(&frame);
    }
    if reader.is_ended() {
        let _ = reader.expect_eof();
    }
});
