//! MR signal equations: the four contrasts the phantom writes.

use super::tissue::Relaxation;

/// Longitudinal relaxivity r1 of a gadolinium chelate at 3 T, in 1/(mmol/L · s)
/// (gadoterate, Rohrer et al. 2005, Invest Radiol 40:715).
const R1_GD: f64 = 3.5;
/// Transverse relaxivity r2 at 3 T, in 1/(mmol/L · s) (same source).
const R2_GD: f64 = 4.3;

/// A contrast the phantom writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contrast {
    T1,
    T1ce,
    T2,
    Flair,
}

impl Contrast {
    /// Every contrast, in the order files are written.
    pub const ALL: [Contrast; 4] = [Contrast::T1, Contrast::T1ce, Contrast::T2, Contrast::Flair];

    /// File stem and modality name: `t1`, `t1ce`, `t2`, `flair`.
    pub fn name(self) -> &'static str {
        match self {
            Contrast::T1 => "t1",
            Contrast::T1ce => "t1ce",
            Contrast::T2 => "t2",
            Contrast::Flair => "flair",
        }
    }

    /// The acquisition that produces this contrast.
    pub fn sequence(self) -> Sequence {
        match self {
            // Inversion-prepared T1 weighting (MPRAGE-like contrast): grey matter sits just past
            // its null point, so white matter is about twice as bright and CSF nearly black.
            Contrast::T1 | Contrast::T1ce => Sequence::InversionRecovery {
                tr_ms: 2000.0,
                te_ms: 10.0,
                ti_ms: 800.0,
            },
            Contrast::T2 => Sequence::SpinEcho {
                tr_ms: 5000.0,
                te_ms: 100.0,
            },
            Contrast::Flair => {
                let (tr_ms, te_ms) = (9000.0, 120.0);
                // Invert at the null point of CSF: 1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0.
                let t1_csf = super::Tissue::Csf.relaxation().t1_ms;
                let ti_ms = -t1_csf * ((1.0 + (-tr_ms / t1_csf).exp()) / 2.0).ln();
                Sequence::InversionRecovery {
                    tr_ms,
                    te_ms,
                    ti_ms,
                }
            }
        }
    }

    /// Whether gadolinium has been given before this acquisition.
    pub fn post_contrast(self) -> bool {
        self == Contrast::T1ce
    }

    /// Noise-free magnitude signal of tissue `r` (proton density units).
    pub fn signal(self, r: &Relaxation) -> f64 {
        let gd = if self.post_contrast() { r.gd_mmol } else { 0.0 };
        let t1 = 1000.0 / (1000.0 / r.t1_ms + R1_GD * gd);
        let t2 = 1000.0 / (1000.0 / r.t2_ms + R2_GD * gd);
        self.sequence().signal(r.pd, t1, t2)
    }
}

/// A pulse sequence with its timing in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sequence {
    /// Spin echo: S = PD · (1 - exp(-TR/T1)) · exp(-TE/T2) (Haacke et al., *Magnetic Resonance
    /// Imaging*, 1999, eq. 18.7 with TE << TR).
    SpinEcho { tr_ms: f64, te_ms: f64 },
    /// Inversion recovery spin echo, magnitude reconstruction:
    /// S = PD · |1 - 2 exp(-TI/T1) + exp(-TR/T1)| · exp(-TE/T2) (same source, eq. 18.10).
    InversionRecovery { tr_ms: f64, te_ms: f64, ti_ms: f64 },
}

impl Sequence {
    /// Signal for proton density `pd` and relaxation times `t1`, `t2` in ms.
    pub fn signal(self, pd: f64, t1: f64, t2: f64) -> f64 {
        match self {
            Sequence::SpinEcho { tr_ms, te_ms } => {
                pd * (1.0 - (-tr_ms / t1).exp()) * (-te_ms / t2).exp()
            }
            Sequence::InversionRecovery {
                tr_ms,
                te_ms,
                ti_ms,
            } => {
                pd * (1.0 - 2.0 * (-ti_ms / t1).exp() + (-tr_ms / t1).exp()).abs()
                    * (-te_ms / t2).exp()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tissue;
    use super::*;

    fn s(c: Contrast, t: Tissue) -> f64 {
        c.signal(&t.relaxation())
    }

    #[test]
    fn flair_nulls_csf() {
        assert!(s(Contrast::Flair, Tissue::Csf) < 1e-9);
        let Sequence::InversionRecovery { ti_ms, .. } = Contrast::Flair.sequence() else {
            panic!()
        };
        assert!((2300.0..2700.0).contains(&ti_ms), "TI {ti_ms}");
    }

    #[test]
    fn textbook_orderings_hold_for_pure_tissues() {
        use Contrast::*;
        use Tissue::*;
        assert!(s(T1, Wm) > s(T1, Gm) && s(T1, Gm) > s(T1, Csf));
        assert!(s(T2, Csf) > s(T2, Gm) && s(T2, Gm) > s(T2, Wm));
        assert!(s(Flair, Oedema) > s(Flair, Gm) && s(Flair, Gm) > s(Flair, Wm));
        assert!(s(T1ce, Enhancing) > 1.5 * s(T1, Enhancing));
        assert_eq!(s(T1ce, Wm), s(T1, Wm));
    }
}
