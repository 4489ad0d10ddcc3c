//! The one rule for numbers a user gives the workshop, as options or as arguments: a count or a
//! duration is a whole number in its range (negative never; zero only where it means
//! something), an amount of money is finite and not negative. A refusal names the option or
//! argument, the value given and the range accepted.

use crate::OptionError;

/// A whole number in `min..=max` (`max` None: no upper bound but the type's).
pub fn whole(what: &str, v: i64, min: u64, max: Option<u64>) -> Result<u64, OptionError> {
    let ok = u64::try_from(v)
        .ok()
        .filter(|v| *v >= min && max.is_none_or(|m| *v <= m));
    ok.ok_or_else(|| {
        OptionError::Invalid(format!("{what} must be {}, got {v}", whole_range(min, max)))
    })
}

/// The accepted range of a whole number, in words.
pub fn whole_range(min: u64, max: Option<u64>) -> String {
    match max {
        Some(max) => format!("a whole number from {min} to {max}"),
        None => format!("a whole number, {min} or more"),
    }
}

/// An amount (of money): finite and 0 or more.
pub fn amount(what: &str, v: f64) -> Result<f64, OptionError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(OptionError::Invalid(format!(
            "{what} must be a finite number, 0 or more, got {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_name_the_option_and_the_range() {
        assert_eq!(whole("timeout_ms", 5, 1, None), Ok(5));
        assert_eq!(whole("ms", 0, 0, None), Ok(0));
        assert_eq!(
            whole("timeout_ms", -1, 1, None)
                .expect_err("refused")
                .to_string(),
            "invalid option: timeout_ms must be a whole number, 1 or more, got -1"
        );
        assert_eq!(
            whole("timeout_ms", 0, 1, None)
                .expect_err("refused")
                .to_string(),
            "invalid option: timeout_ms must be a whole number, 1 or more, got 0"
        );
        assert_eq!(
            whole("priority", 9, 1, Some(5))
                .expect_err("refused")
                .to_string(),
            "invalid option: priority must be a whole number from 1 to 5, got 9"
        );
    }

    #[test]
    fn amounts_are_finite_and_not_negative() {
        assert_eq!(amount("max_cost_usd", 0.0), Ok(0.0));
        assert_eq!(amount("max_cost_usd", 2.5), Ok(2.5));
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = amount("max_cost_usd", bad).expect_err("refused");
            assert!(
                e.to_string()
                    .contains("max_cost_usd must be a finite number, 0 or more"),
                "{e}"
            );
        }
    }
}
