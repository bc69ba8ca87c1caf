"""A PACS-style export of medsynth phantom DICOM series for the flat-tree test: patients,
studies and series mixed in one tree written by pydicom's FileSet (a DICOMDIR and
PT*/ST*/SE*/IM* files, as on a CD), with identifying data injected into every file.

Usage: make_flat_export.py PHANTOM_DIR OUT_DIR
PHANTOM_DIR holds sub-*/{t1,t2,...}/IM*.dcm (medsynth phantom --format dicom). Every subject
becomes a patient with a name, ID, birth date, institution, accession number and free text;
the first patient gets a second, later study with its T1 again (so `prefer = "latest"` has a
choice), and every patient a one-slice localizer and a derived T2 copy that the pipeline's
patterns must not pick. Prints JSON: the identifying strings injected, and per patient its
PatientID, which T1 series is the latest, and the StudyInstanceUID and FrameOfReferenceUID of
its T2.
"""
import copy
import json
import sys
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid


def identify(ds, p, study_uid, study_date, accession):
    ds.PatientName = f"DOE^JANE^{p}"
    ds.PatientID = f"MRN{p}77310"
    ds.PatientBirthDate = f"1961031{p}"
    ds.PatientSex = "F"
    ds.InstitutionName = "ST ELSEWHERE HOSPITAL"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.StudyID = f"S{p}"
    ds.StudyDescription = f"BRAIN MRI for JANE DOE {p}"
    ds.ImageComments = f"Patient JANE DOE {p}, MRN{p}77310, called 555-0199"
    return ds


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    fs = FileSet()
    phi = {"ST ELSEWHERE HOSPITAL", "HOUSE^GREGORY", "555-0199", "JANE DOE"}
    patients = {}
    keep = []  # datasets must outlive fs.write
    for p, subject in enumerate(sorted(src.glob("sub-*")), start=1):
        study = generate_uid()
        accession = f"ACC{p}5521"
        phi |= {f"DOE^JANE^{p}", f"MRN{p}77310", f"1961031{p}", accession}
        series_number = 1
        latest_t1 = None
        for contrast in sorted(d for d in subject.iterdir() if d.is_dir()):
            files = sorted(contrast.glob("*.dcm"))
            variants = [("", study, "20240102", "090000")]
            if p == 1 and contrast.name == "t1":
                variants.append(("again", generate_uid(), "20240315", "143000"))
            if contrast.name == "t2":
                variants.append(("derived", study, "20240102", "091500"))
            for kind, study_uid, date, time in variants:
                series_uid = generate_uid()
                for f in files:
                    ds = pydicom.dcmread(f)
                    identify(ds, p, study_uid, date, accession if kind != "again" else accession + "B")
                    ds.SeriesInstanceUID = series_uid
                    ds.SOPInstanceUID = generate_uid()
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    ds.SeriesDate, ds.SeriesTime = date, time
                    ds.SeriesNumber = series_number
                    if kind == "derived":
                        ds.SeriesDescription = ds.SeriesDescription + " derived"
                        ds.ImageType = ["DERIVED", "SECONDARY", "ADC"]
                    keep.append(ds)
                    fs.add(ds)
                if kind == "again":
                    phi.add(accession + "B")
                    latest_t1 = series_uid
                series_number += 1
        # A one-slice localizer, in another orientation.
        ds = pydicom.dcmread(sorted((subject / "t1").glob("*.dcm"))[0])
        identify(ds, p, study, "20240102", accession)
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "localizer"
        ds.SeriesNumber = series_number
        ds.SeriesDate, ds.SeriesTime = "20240102", "085900"
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        keep.append(ds)
        fs.add(ds)
        patients[subject.name] = {
            "patient_id": f"MRN{p}77310",
            "latest_t1": latest_t1,
            "study": study,
            "frame_of_reference": str(ds.FrameOfReferenceUID),
        }
        phi.add(f"MRN{p}77310")
    fs.write(out)
    print(json.dumps({"phi": sorted(phi), "patients": patients}))


if __name__ == "__main__":
    main()
