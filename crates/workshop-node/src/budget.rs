//! Budgets, AgentWorkshop's semantics: a global and per-agent USD limit checked before every
//! send. The turn that crosses a limit completes; the next send is refused. `reset_budget`
//! clears the limits and starts the spent totals again from zero. Pure bookkeeping.

use crate::BudgetView;
use std::collections::HashMap;

use workshop_types::AgentName;

#[derive(Debug, Default, Clone)]
pub struct Budgets {
    global_limit: Option<f64>,
    global_offset: f64,
    limits: HashMap<AgentName, f64>,
    offsets: HashMap<AgentName, f64>,
}

impl Budgets {
    pub fn set_global(&mut self, limit: Option<f64>) {
        self.global_limit = limit;
    }

    pub fn set_agent(&mut self, name: &AgentName, limit: Option<f64>) {
        self.offsets.remove(name);
        match limit {
            Some(l) => self.limits.insert(name.clone(), l),
            None => self.limits.remove(name),
        };
    }

    pub fn forget(&mut self, name: &AgentName) {
        self.limits.remove(name);
        self.offsets.remove(name);
    }

    pub fn agent(&self, name: &AgentName, cost: f64) -> BudgetView {
        BudgetView {
            limit: self.limits.get(name).copied(),
            spent: cost - self.offsets.get(name).copied().unwrap_or(0.0),
        }
    }

    pub fn global(&self, total_cost: f64) -> BudgetView {
        BudgetView {
            limit: self.global_limit,
            spent: total_cost - self.global_offset,
        }
    }

    /// `Err(reason)` when a send must be refused.
    pub fn check(&self, name: &AgentName, cost: f64, total_cost: f64) -> Result<(), String> {
        let a = self.agent(name, cost);
        if let Some(limit) = a.limit {
            if a.spent > limit || (limit == 0.0 && a.spent >= 0.0) {
                return Err(format!(
                    "{name} budget exceeded (${:.4} of ${limit:.4}); raise max_cost_usd or reset_budget()",
                    a.spent
                ));
            }
        }
        let g = self.global(total_cost);
        if let Some(limit) = g.limit {
            if g.spent > limit || (limit == 0.0 && g.spent >= 0.0) {
                return Err(format!(
                    "global budget exceeded (${:.4} of ${limit:.4}); raise configure(#{{max_cost_usd: ..}}) or reset_budget()",
                    g.spent
                ));
            }
        }
        Ok(())
    }

    /// Clear every limit and restart the spent totals from the current costs.
    pub fn reset(&mut self, costs: &[(AgentName, f64)], total_cost: f64) {
        self.global_limit = None;
        self.global_offset = total_cost;
        self.limits.clear();
        self.offsets = costs.iter().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> AgentName {
        AgentName::new(s).expect("name")
    }

    #[test]
    fn the_crossing_turn_completes_and_the_next_is_refused() {
        let mut b = Budgets::default();
        b.set_agent(&n("a"), Some(0.005));
        assert!(b.check(&n("a"), 0.0, 0.0).is_ok(), "first send allowed");
        let e = b.check(&n("a"), 0.01, 0.01).expect_err("second refused");
        assert!(e.contains("a budget exceeded ($0.0100 of $0.0050)"), "{e}");
    }

    #[test]
    fn global_limit_and_reset() {
        let mut b = Budgets::default();
        b.set_global(Some(0.02));
        assert!(
            b.check(&n("a"), 0.01, 0.02).is_ok(),
            "at the limit is allowed"
        );
        assert!(b.check(&n("a"), 0.01, 0.03).is_err());
        b.reset(&[(n("a"), 0.01)], 0.03);
        assert!(b.check(&n("a"), 0.01, 0.03).is_ok());
        assert_eq!(b.global(0.05).spent, 0.05 - 0.03);
        assert_eq!(b.agent(&n("a"), 0.04).spent, 0.04 - 0.01);
    }
}
