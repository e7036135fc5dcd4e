//! Budgets: counters a peer spends by triggering work and earns back by
//! useful traffic. An exhausted budget ends the connection with
//! GOAWAY(EXCESSIVE_LOAD).

#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    left: u32,
    max: u32,
}

impl Budget {
    pub(super) fn new(max: u32) -> Self {
        Self { left: max, max }
    }

    /// Spends `n`; `false` when the budget is exhausted.
    #[must_use]
    pub(super) fn charge(&mut self, n: u32) -> bool {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                true
            }
            None => {
                self.left = 0;
                false
            }
        }
    }

    /// Earns back `n`, up to the maximum.
    pub(super) fn refund(&mut self, n: u32) {
        self.left = self.left.saturating_add(n).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_and_refund() {
        let mut b = Budget::new(3);
        assert!(b.charge(2));
        assert!(!b.charge(2));
        b.refund(10);
        assert!(b.charge(3));
        assert!(!b.charge(1));
    }
}
