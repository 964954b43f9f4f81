//! A program the kernel refused to load, in one line: which program, which kernel, the errno and
//! the verifier's decisive line. The verifier's whole log (thousands of lines on a big program)
//! goes to the debug log instead (shown with -v: see main.rs's filter), once, when the refusal
//! is classified.

use std::io;

/// Where the full verifier log is logged; main.rs's -v filter shows this target at debug level.
pub const LOG_TARGET: &str = module_path!();

/// Lines the verifier (and libbpf-style loaders) print after the verdict: statistics, markers
/// and blank lines. The decisive line is the last one before them.
fn is_epilogue(line: &str) -> bool {
    line.is_empty()
        || (line.starts_with("processed ") && line.contains(" insns"))
        || line.starts_with("verification time")
        || line.starts_with("stack depth")
        || line.starts_with("-- END PROG LOAD LOG --")
}

/// `R<digits> ...`: a line about one register.
fn names_a_register(line: &str) -> bool {
    line.strip_prefix('R').is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(' ')
    })
}

/// The verifier's decisive line: the last line of `log` before its closing statistics, or
/// `None` when there is none (an empty log: the kernel refused before verifying).
///
/// One kind of error spans two lines: a bounds check prints what was accessed
/// (`invalid access to map value, value_size=512 off=0 size=0`, `invalid access to packet, ...`)
/// and then the register whose bounds failed (`R3 min value is outside of the allowed memory
/// range`). When the last line names a register and the one before it starts with
/// `invalid access to`, both are returned, joined by "; ".
pub fn decisive_line(log: &str) -> Option<String> {
    let mut lines = log
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        .rev()
        .skip_while(|l| is_epilogue(l));
    let last = lines.next()?;
    match lines.next() {
        Some(before) if names_a_register(last) && before.starts_with("invalid access to") => {
            Some(format!("{before}; {last}"))
        }
        _ => Some(last.to_owned()),
    }
}

/// The running kernel, as `uname -sr` prints it ("Linux 6.1.0-50-amd64").
pub fn kernel_release() -> String {
    // SAFETY: uname only writes into the struct it is given; all-zero is a valid utsname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&raw mut uts) } != 0 {
        return "Linux (release unknown)".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&uts.sysname), field(&uts.release))
}

/// The errno of a refused load, by name and in words: "EACCES: Permission denied".
fn errno_text(e: &io::Error) -> String {
    // What bpf(BPF_PROG_LOAD) returns; 524 is the kernel-internal ENOTSUPP.
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EFAULT) => "EFAULT",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(524) => "ENOTSUPP",
        _ => return e.to_string(),
    };
    // io::Error says "Permission denied (os error 13)": the number is already in the name.
    let words = e.to_string();
    let words = words.split(" (os error").next().unwrap_or_default();
    format!("{name}: {words}")
}

/// The one-line message of a refusal (`LoadError::Verifier`'s `Display`).
pub fn describe(
    program: &str,
    kernel: &str,
    io_error: &io::Error,
    decisive: Option<&str>,
) -> String {
    let head = format!(
        "the kernel refused program {program} ({kernel}, {})",
        errno_text(io_error)
    );
    match decisive {
        Some(line) => {
            format!("{head}: the verifier says: {line} (run with -v for its full log)")
        }
        // EINVAL before any verifying: the kernel rejected the request itself.
        None if io_error.raw_os_error() == Some(libc::EINVAL) => format!(
            "{head} before verifying it (the verifier log is empty): this kernel does not know \
             something the program asks for, such as a program flag, a helper or an attach type"
        ),
        None => format!("{head} before verifying it (the verifier log is empty)"),
    }
}

/// Logs the full verifier log of `program` at debug level (shown with -v).
pub fn log_full(program: &str, log: &str) {
    let log = log.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    if log.trim().is_empty() {
        log::debug!(target: LOG_TARGET, "{program}: the verifier's log is empty");
    } else {
        log::debug!(target: LOG_TARGET, "{program}: the verifier's log:\n{log}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TC_6_12: &str = include_str!("../../tests/data/verifier/6.12-tc-unbounded-min.log");
    const XDP_6_1: &str = include_str!("../../tests/data/verifier/6.1-xdp-scalar.log");
    const TC_6_1: &str = include_str!("../../tests/data/verifier/6.1-tc-map-value.log");

    fn eacces() -> io::Error {
        io::Error::from_raw_os_error(libc::EACCES)
    }

    #[test]
    fn the_decisive_line_is_the_last_before_the_statistics() {
        assert_eq!(
            decisive_line(TC_6_12).as_deref(),
            Some("math between pkt pointer and register with unbounded min value is not allowed")
        );
        // 6.1 prints the verification time and stack depth too.
        assert_eq!(
            decisive_line(XDP_6_1).as_deref(),
            Some("R1 invalid mem access 'scalar'")
        );
    }

    #[test]
    fn a_bounds_error_keeps_both_of_its_lines() {
        assert_eq!(
            decisive_line(TC_6_1).as_deref(),
            Some(
                "invalid access to map value, value_size=512 off=0 size=0; \
                 R3 min value is outside of the allowed memory range"
            )
        );
    }

    #[test]
    fn a_register_line_after_an_instruction_stands_alone() {
        // The line before "R1 ..." is an instruction, not the first half of the error.
        let log = "245: (61) r3 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\n";
        assert_eq!(
            decisive_line(log).as_deref(),
            Some("R1 invalid mem access 'scalar'")
        );
    }

    #[test]
    fn markers_blank_lines_and_nuls_are_skipped() {
        let log = "0: (b7) r0 = 0\nR0 !read_ok\n\n-- END PROG LOAD LOG --\n\n\0";
        assert_eq!(decisive_line(log).as_deref(), Some("R0 !read_ok"));
    }

    #[test]
    fn an_empty_log_has_no_decisive_line() {
        assert_eq!(decisive_line(""), None);
        assert_eq!(decisive_line("\n\n"), None);
        assert_eq!(decisive_line("processed 0 insns (limit 1000000)\n"), None);
    }

    #[test]
    fn registers_are_told_from_other_words() {
        assert!(names_a_register(
            "R3 min value is outside of the allowed memory range"
        ));
        assert!(names_a_register("R10 invalid mem access 'scalar'"));
        assert!(!names_a_register("Reg 3"));
        assert!(!names_a_register("R"));
        assert!(!names_a_register("R3"));
    }

    #[test]
    fn the_message_is_one_line_naming_program_kernel_errno_and_reason() {
        let message = describe(
            "csum_tc_ingress",
            "Linux 6.1.0-50-amd64",
            &eacces(),
            decisive_line(TC_6_1).as_deref(),
        );
        assert_eq!(
            message,
            "the kernel refused program csum_tc_ingress (Linux 6.1.0-50-amd64, EACCES: \
             Permission denied): the verifier says: invalid access to map value, value_size=512 \
             off=0 size=0; R3 min value is outside of the allowed memory range (run with -v for \
             its full log)"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn an_empty_log_with_einval_says_the_kernel_refused_before_verifying() {
        let message = describe(
            "csum_audit_xdp",
            "Linux 5.10.0-30-amd64",
            &io::Error::from_raw_os_error(libc::EINVAL),
            decisive_line("").as_deref(),
        );
        assert_eq!(
            message,
            "the kernel refused program csum_audit_xdp (Linux 5.10.0-30-amd64, EINVAL: Invalid \
             argument) before verifying it (the verifier log is empty): this kernel does not \
             know something the program asks for, such as a program flag, a helper or an attach \
             type"
        );
        let e2big = describe(
            "noop_xdp",
            "Linux 6.1.0",
            &io::Error::from_raw_os_error(libc::E2BIG),
            None,
        );
        assert!(
            e2big.ends_with(
                "E2BIG: Argument list too long) before verifying it (the verifier log is empty)"
            ),
            "{e2big}"
        );
    }

    #[test]
    fn a_refused_load_error_prints_the_one_line() {
        let e = crate::kernel::loader::LoadError::Verifier {
            program: "csum_audit_xdp".into(),
            kernel: "Linux 6.1.0-50-amd64".into(),
            io_error: eacces(),
            decisive: decisive_line(XDP_6_1),
            log: XDP_6_1.into(),
        };
        assert_eq!(
            e.to_string(),
            "the kernel refused program csum_audit_xdp (Linux 6.1.0-50-amd64, EACCES: Permission \
             denied): the verifier says: R1 invalid mem access 'scalar' (run with -v for its full \
             log)"
        );
    }

    #[test]
    fn the_running_kernel_is_named() {
        let release = kernel_release();
        assert!(release.starts_with("Linux "), "{release}");
        assert!(release.len() > "Linux ".len(), "{release}");
    }
}
