//! The input of a receive, buffered so that the receive can tell whether the next record is
//! read already, and so can be looked at before the one in hand is applied without waiting for
//! the sender (the journal writes the undo of a run of records ahead in one entry).

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use anysend_stream::{format, StreamError, StreamReader};

/// Input bytes buffered for looking ahead.
pub const AHEAD_BYTES: usize = 8 << 20;

/// A stream being read: its reader, over the look-ahead buffer, and a view of that buffer.
pub struct Input<R: Read> {
    pub reader: StreamReader<Lookahead<R>>,
    pub peek: Peek,
}

impl<R: Read> Input<R> {
    /// Reads and verifies the stream's header from `input`.
    pub fn open(input: R) -> Result<Input<R>, StreamError> {
        let input = Lookahead::new(input);
        let peek = input.peek();
        Ok(Input { reader: StreamReader::new(input)?, peek })
    }
}

/// The input, read in large pieces into a buffer that a [`Peek`] can look into.
pub struct Lookahead<R> {
    inner: R,
    buf: Rc<RefCell<Buffered>>,
}

/// Bytes read from the input and not yet consumed: `data[pos..end]`.
#[derive(Default)]
struct Buffered {
    data: Vec<u8>,
    pos: usize,
    end: usize,
}

/// A view of a [`Lookahead`]'s buffer.
#[derive(Clone)]
pub struct Peek(Rc<RefCell<Buffered>>);

impl<R: Read> Lookahead<R> {
    pub fn new(inner: R) -> Self {
        Lookahead { inner, buf: Default::default() }
    }

    pub fn peek(&self) -> Peek {
        Peek(self.buf.clone())
    }
}

impl Peek {
    /// Whether the buffer holds a whole record frame.
    pub fn frame_ready(&self) -> bool {
        let b = self.0.borrow();
        let avail = &b.data[b.pos..b.end];
        format::frame_len(avail).is_some_and(|n| avail.len() as u64 >= n)
    }
}

impl<R: Read> Read for Lookahead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut b = self.buf.borrow_mut();
        if b.pos == b.end {
            if out.len() >= AHEAD_BYTES {
                drop(b);
                return self.inner.read(out);
            }
            // Empty: one read of whatever the input has, at most AHEAD_BYTES.
            if b.data.len() < AHEAD_BYTES {
                b.data.resize(AHEAD_BYTES, 0);
            }
            let n = loop {
                match self.inner.read(&mut b.data[..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            b.pos = 0;
            b.end = n;
        }
        let Buffered { data, pos, end } = &mut *b;
        let n = out.len().min(*end - *pos);
        out[..n].copy_from_slice(&data[*pos..*pos + n]);
        *pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_ready_only_when_all_of_it_is_buffered() {
        // A frame of 5 payload bytes: 8 header bytes, the payload, 4 CRC bytes.
        let mut frame = vec![9, 0, 0, 0, 5, 0, 0, 0];
        frame.extend_from_slice(&[1; 5 + 4]);
        for cut in 0..frame.len() {
            let mut input = Lookahead::new(&frame[..cut]);
            let peek = input.peek();
            let mut first = [0u8; 0];
            let _ = input.read(&mut first); // fills the buffer, consumes nothing
            assert!(!peek.frame_ready(), "{cut} bytes");
        }
        let mut input = Lookahead::new(&frame[..]);
        let peek = input.peek();
        let _ = input.read(&mut [0u8; 0]);
        assert!(peek.frame_ready());
        let mut two = [0u8; 2];
        input.read_exact(&mut two).unwrap();
        assert!(!peek.frame_ready(), "what is left is not a frame's start");
    }
}
