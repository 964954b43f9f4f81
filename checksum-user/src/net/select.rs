//! Which interfaces to audit: names, shell-style glob patterns, or all of them.

/// Which interfaces to audit.
#[derive(Debug, Clone)]
pub struct Selector {
    pub patterns: Vec<String>,
    /// Every interface but loopback (loopback too if a pattern names it).
    pub all: bool,
}

impl Selector {
    pub fn matches(&self, name: &str, loopback: bool) -> bool {
        let named = self.patterns.iter().any(|p| glob_match(p, name));
        named || (self.all && !loopback)
    }

    /// Literal names (no wildcard) must exist when we start; patterns may match later.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.patterns
            .iter()
            .map(String::as_str)
            .filter(|p| !is_pattern(p))
    }
}

/// Whether `iface` is a glob pattern (`*`, `?`, `[...]`) rather than a plain name.
pub fn is_pattern(iface: &str) -> bool {
    iface.contains(['*', '?', '['])
}

/// Shell-style wildcard match with `*`, `?` and `[abc]`/`[a-z]` classes (an unclosed `[` is a
/// literal). Linear in the pattern times the name: on a mismatch only the last `*` seen takes one
/// more character, which is enough when every other element matches exactly one.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        let end = p.iter().position(|&x| x == ']')?;
        let set = &p[1..end];
        let mut i = 0;
        let mut hit = false;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == '-' {
                hit |= set[i] <= c && c <= set[i + 2];
                i += 3;
            } else {
                hit |= set[i] == c;
                i += 1;
            }
        }
        Some((hit, end + 1))
    }
    /// The length of the element at the start of `p` if it matches `c`.
    fn one(p: &[char], c: char) -> Option<usize> {
        match p.first()? {
            '*' => None,
            '?' => Some(1),
            '[' => match class(p, c) {
                Some((hit, used)) => hit.then_some(used),
                None => (c == '[').then_some(1),
            },
            &x => (x == c).then_some(1),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    // After the last `*`: where the pattern resumes, and the name position it resumed at.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if p.get(i) == Some(&'*') {
            i += 1;
            star = Some((i, j));
        } else if let Some(used) = one(&p[i..], n[j]) {
            i += used;
            j += 1;
        } else if let Some((after, from)) = star {
            // Let that `*` take one more character and try again from there.
            (i, j) = (after, from + 1);
            star = Some((after, from + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("veth*", "veth1"));
        assert!(glob_match("veth*", "veth"));
        assert!(!glob_match("veth*", "eth0"));
        assert!(glob_match("eth?", "eth0"));
        assert!(!glob_match("eth?", "eth10"));
        assert!(glob_match("eth[0-2]", "eth1"));
        assert!(!glob_match("eth[0-2]", "eth3"));
        assert!(glob_match("lxc*_eth[ab]", "lxc123_ethb"));
        assert!(glob_match("eth0", "eth0"));
        assert!(!glob_match("eth0", "eth00"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b", "xaxb"));
        assert!(!glob_match("*a*b", "xaxbx"));
        assert!(glob_match("e*[0-9]?", "eth01"));
        assert!(glob_match("[ab", "[ab"), "an unclosed [ is a literal");
        assert!(glob_match("a[*]", "a*"));
        assert!(!glob_match("a[]", "a"));
    }

    #[test]
    fn globs_take_linear_time() {
        // Found by the cli_specs fuzz target: the recursive matcher retried every `*` at every
        // position, exponential in the number of stars: `*` x 60 then `k[` against a 15-character
        // name never finished. The matcher is linear now, so this ends well within the timeout.
        let pattern = format!("{}k[", "*".repeat(60));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(glob_match(&pattern, "abcdefghijklmno")));
        let matched = finished
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("glob_match still running after 5 s");
        assert!(!matched);
    }

    #[test]
    fn selection() {
        let all = Selector {
            patterns: vec![],
            all: true,
        };
        assert!(all.matches("eth0", false));
        assert!(!all.matches("lo", true));
        let all_and_lo = Selector {
            patterns: vec!["lo".into()],
            all: true,
        };
        assert!(all_and_lo.matches("lo", true));
        let some = Selector {
            patterns: vec!["veth*".into(), "eth0".into()],
            all: false,
        };
        assert!(some.matches("veth9", false));
        assert!(!some.matches("eth1", false));
        assert_eq!(some.literals().collect::<Vec<_>>(), ["eth0"]);
    }
}
