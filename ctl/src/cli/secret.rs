//! Reading the activation URL so that it is never an argument (DESIGN §8: other local users
//! read `/proc/<pid>/cmdline`): a prompt that does not echo on a terminal, else the first
//! line of standard input.

use std::io::{self, BufRead, IsTerminal, Write};
use std::os::fd::AsFd;

use compartmentctl::wire::MAX_LINE;
use nix::sys::termios::{self, LocalFlags, SetArg};

use super::exit::Failure;

/// What the prompt says; the URL pasted after it is not shown.
pub const PROMPT: &str = "Activation URL (input hidden): ";

/// The activation URL, from a no-echo prompt when stdin is a terminal, else from stdin's
/// first line.
pub fn read_activation_url() -> Result<String, Failure> {
    let stdin = io::stdin();
    let line = if stdin.is_terminal() {
        prompt_without_echo(&stdin, PROMPT)
    } else {
        first_line(stdin.lock())
    }
    .map_err(Failure::Input)?;
    line.ok_or_else(|| {
        Failure::usage(
            "no activation URL was given on standard input",
            "paste the URL you were sent at the prompt, or pipe it in on standard input",
        )
    })
}

/// The first line of `input`, trimmed; `None` when it holds nothing but blanks. Reads at
/// most one request line's worth, so an endless stream cannot grow memory.
pub fn first_line(input: impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    input.take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
    let text = String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the input is not UTF-8"))?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// Prints `prompt` on stderr and reads a line from the terminal on stdin with echo off (the
/// newline still shows), restoring the terminal's settings however the read ends.
fn prompt_without_echo(stdin: &io::Stdin, prompt: &str) -> io::Result<Option<String>> {
    let fd = stdin.as_fd();
    let saved = termios::tcgetattr(fd)?;
    let mut hidden = saved.clone();
    hidden.local_flags.remove(LocalFlags::ECHO);
    hidden.local_flags.insert(LocalFlags::ECHONL);
    let mut stderr = io::stderr().lock();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    termios::tcsetattr(fd, SetArg::TCSAFLUSH, &hidden)?;
    let line = first_line(stdin.lock());
    let restored = termios::tcsetattr(fd, SetArg::TCSAFLUSH, &saved);
    let line = line?;
    restored?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_first_line_is_read_and_trimmed() {
        let url = "https://host/activate?token=abc";
        assert_eq!(
            first_line(format!("  {url} \r\nsecond line\n").as_bytes()).unwrap(),
            Some(url.to_owned())
        );
        assert_eq!(first_line(url.as_bytes()).unwrap(), Some(url.to_owned()));
    }

    #[test]
    fn nothing_or_blanks_is_no_url() {
        assert_eq!(first_line(&b""[..]).unwrap(), None);
        assert_eq!(first_line(&b"  \n"[..]).unwrap(), None);
        assert_eq!(first_line(&b"\nhttps://late\n"[..]).unwrap(), None);
    }

    #[test]
    fn an_endless_line_is_cut_at_the_line_limit() {
        let endless = std::io::repeat(b'a');
        let line = first_line(io::BufReader::new(endless)).unwrap().unwrap();
        assert_eq!(line.len(), MAX_LINE);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        let err = first_line(&b"\xff\xfe\n"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
