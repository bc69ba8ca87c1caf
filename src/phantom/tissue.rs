//! Tissue classes of the phantom and their MR properties at 3 T.

use serde::Serialize;

/// A tissue class. The discriminant is the value written in the tissue map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum Tissue {
    Background = 0,
    /// Scalp, modelled as subcutaneous fat.
    Scalp = 1,
    /// Cortical bone of the skull.
    Skull = 2,
    /// Cerebrospinal fluid around the brain and in the sulci.
    Csf = 3,
    /// Grey matter: the folded cortical ribbon and the deep grey nuclei.
    Gm = 4,
    /// White matter.
    Wm = 5,
    /// Cerebrospinal fluid of the lateral and third ventricles.
    Ventricle = 6,
    /// Necrotic tumour core (BraTS label 1).
    Necrosis = 7,
    /// Peritumoral oedema (BraTS label 2).
    Oedema = 8,
    /// Enhancing tumour (BraTS label 3).
    Enhancing = 9,
}

impl Tissue {
    /// Every class, in discriminant order.
    pub const ALL: [Tissue; 10] = [
        Tissue::Background,
        Tissue::Scalp,
        Tissue::Skull,
        Tissue::Csf,
        Tissue::Gm,
        Tissue::Wm,
        Tissue::Ventricle,
        Tissue::Necrosis,
        Tissue::Oedema,
        Tissue::Enhancing,
    ];

    /// The class with discriminant `v`.
    pub fn from_u8(v: u8) -> Option<Tissue> {
        Tissue::ALL.get(v as usize).copied()
    }

    /// The BraTS label of this class: 1 necrosis, 2 oedema, 3 enhancing tumour, else 0.
    pub fn brats_label(self) -> u8 {
        match self {
            Tissue::Necrosis => 1,
            Tissue::Oedema => 2,
            Tissue::Enhancing => 3,
            _ => 0,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Tissue::Background => "background",
            Tissue::Scalp => "scalp",
            Tissue::Skull => "skull",
            Tissue::Csf => "csf",
            Tissue::Gm => "gm",
            Tissue::Wm => "wm",
            Tissue::Ventricle => "ventricle",
            Tissue::Necrosis => "necrosis",
            Tissue::Oedema => "oedema",
            Tissue::Enhancing => "enhancing",
        }
    }

    /// Relaxation parameters at 3 T.
    ///
    /// Sources: grey and white matter T1/T2 from Wansapura et al. 1999 (JMRI 9:531, 3 T:
    /// WM 832/79.6 ms, GM 1331/110 ms); CSF T1 from Lu et al. 2005 (MRM 54:1403, ~4.2 s),
    /// CSF T2 ~2 s; subcutaneous fat from Gold et al. 2004 (AJR 183:343, 3 T: 371/133 ms);
    /// relative proton density (water content) WM 0.69, GM 0.80, CSF 1.0 (Whittall et al.
    /// 1997); cortical bone has almost no visible signal. Tumour compartments follow
    /// relaxometry of gliomas at 3 T (e.g. Badve et al. 2017, AJNR 38:492): prolonged T1 and
    /// T2 in oedema and necrosis. The enhancing rim takes up gadolinium (`gd_mmol`), which
    /// shortens T1 only on the contrast-enhanced T1.
    pub fn relaxation(self) -> Relaxation {
        let r = |pd, t1_ms, t2_ms, gd_mmol| Relaxation {
            pd,
            t1_ms,
            t2_ms,
            gd_mmol,
        };
        match self {
            Tissue::Background => r(0.0, 1000.0, 100.0, 0.0),
            Tissue::Scalp => r(0.90, 371.0, 133.0, 0.0),
            Tissue::Skull => r(0.05, 300.0, 1.0, 0.0),
            Tissue::Csf | Tissue::Ventricle => r(1.0, 4163.0, 2000.0, 0.0),
            Tissue::Gm => r(0.80, 1331.0, 110.0, 0.0),
            Tissue::Wm => r(0.69, 832.0, 79.6, 0.0),
            Tissue::Necrosis => r(0.95, 2600.0, 320.0, 0.02),
            Tissue::Oedema => r(0.87, 1550.0, 190.0, 0.0),
            Tissue::Enhancing => r(0.86, 1700.0, 110.0, 0.35),
        }
    }
}

/// Proton density (relative to water), relaxation times and gadolinium concentration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relaxation {
    /// Proton density relative to pure water.
    pub pd: f64,
    /// Longitudinal relaxation time in ms, without contrast agent.
    pub t1_ms: f64,
    /// Transverse relaxation time in ms, without contrast agent.
    pub t2_ms: f64,
    /// Gadolinium concentration in mmol/L after injection.
    pub gd_mmol: f64,
}
