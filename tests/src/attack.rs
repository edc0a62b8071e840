//! The attack suite's tally: each class of attack tries its cases, every case must be refused,
//! and the class prints how many it tried and refused (the figures the security issue asks for:
//! `cargo test -p lockgate-tests --test attacks -- --nocapture | grep 'attack tally'`).

/// Cases tried and refused for one class of attack on one database (or one component).
#[derive(Debug)]
pub struct Tally {
    class: String,
    tried: usize,
    refused: usize,
    let_through: Vec<String>,
}

impl Tally {
    /// A tally for a class of attack, e.g. `"tokens (sqlite)"`.
    pub fn new(class: impl Into<String>) -> Tally {
        Tally {
            class: class.into(),
            tried: 0,
            refused: 0,
            let_through: Vec::new(),
        }
    }

    /// Record one case: `refused` says whether the gateway refused it.
    pub fn case(&mut self, name: impl Into<String>, refused: bool) {
        self.tried += 1;
        if refused {
            self.refused += 1;
        } else {
            self.let_through.push(name.into());
        }
    }

    /// Record a case answered over HTTP: refused when the status is one of `refusals`.
    pub fn status(&mut self, name: impl Into<String>, status: u16, refusals: &[u16]) {
        let name = name.into();
        let refused = refusals.contains(&status);
        self.case(
            if refused {
                name
            } else {
                format!("{name} (answered {status})")
            },
            refused,
        );
    }

    /// Print the figures and fail, naming every case that got through.
    #[track_caller]
    pub fn finish(self) {
        println!(
            "attack tally: class={:?} tried={} refused={}",
            self.class, self.tried, self.refused
        );
        assert!(self.tried > 0, "{}: no case was tried", self.class);
        assert!(
            self.let_through.is_empty(),
            "{}: {} of {} attacks got through: {:#?}",
            self.class,
            self.let_through.len(),
            self.tried,
            self.let_through
        );
    }
}
