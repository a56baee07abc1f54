//! Annotation frames: the three CSV formats and two directory layouts, BOM and CR-only
//! line endings, missing/unlisted images reported, bad rows named by file, line, value.
mod common;

use bone_age::dataset::{self, CsvFormat, Dataset, Layout, Split};
use bone_age::Config;
use common::*;

#[test]
fn recipe_layout_loads_with_typed_columns() {
    let dir = tempfile::tempdir().unwrap();
    recipe_dataset(dir.path(), &[(5, 30.5, true), (3, 120.0, false)], [8, 6]);
    let (layout, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    assert_eq!(layout, Layout::Recipe);
    assert_eq!(ds.format, CsvFormat::IdBoneageMale);
    let names: Vec<&str> = ds
        .frame
        .get_column_names()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(names, ["id", "boneage", "male", "path"]);
    assert_eq!(dataset::ids(&ds.frame).unwrap(), [5, 3], "file order kept");
    assert_eq!(dataset::ages(&ds.frame).unwrap(), [30.5, 120.0]);
    assert_eq!(dataset::males(&ds.frame).unwrap(), [true, false]);
    assert!(dataset::paths(&ds.frame).unwrap()[0].ends_with("train/5.png"));
}

#[test]
fn kaggle_layout_with_bom_and_cr_only_lines() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir
        .path()
        .join("boneage-training-dataset/boneage-training-dataset");
    write_png(&images.join("1377.png"), 1377, 4, 4);
    write_png(&images.join("1378.png"), 1378, 4, 4);
    std::fs::write(
        dir.path().join("boneage-training-dataset.csv"),
        "\u{feff}id,boneage,male\r1377,180,False\r1378,12,True\r",
    )
    .unwrap();
    let (layout, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    assert_eq!(layout, Layout::Kaggle);
    assert_eq!(dataset::ids(&ds.frame).unwrap(), [1377, 1378]);
    assert_eq!(dataset::ages(&ds.frame).unwrap(), [180.0, 12.0]);

    // The unlabelled Kaggle test set: `Case ID,Sex` with M/F, no boneage column.
    let test_images = dir.path().join("boneage-test-dataset/boneage-test-dataset");
    write_png(&test_images.join("4360.png"), 4360, 4, 4);
    std::fs::write(
        dir.path().join("boneage-test-dataset.csv"),
        "Case ID,Sex\r\n4360,M\r\n",
    )
    .unwrap();
    let (_, test) = Dataset::from_dir(dir.path(), Split::Test, Some(Layout::Kaggle)).unwrap();
    assert_eq!(test.format, CsvFormat::CaseIdSex);
    assert!(!test.is_labelled());
    assert_eq!(dataset::males(&test.frame).unwrap(), [true]);
}

#[test]
fn rsna_ground_truth_format_with_decimal_months() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("img/4360.png"), 4360, 4, 4);
    write_png(&dir.path().join("img/4361.png"), 4361, 4, 4);
    let csv = dir.path().join("gt.csv");
    std::fs::write(
        &csv,
        "Case ID,Sex,Ground truth bone age (months)\n4360,M,168.934\n4361,F,169.7\n",
    )
    .unwrap();
    let ds = Dataset::from_csv(&csv, &dir.path().join("img")).unwrap();
    assert_eq!(ds.format, CsvFormat::RsnaGroundTruth);
    assert_eq!(dataset::ages(&ds.frame).unwrap(), [168.934, 169.7]);
    assert_eq!(dataset::males(&ds.frame).unwrap(), [true, false]);
}

#[test]
fn missing_and_unlisted_images_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    recipe_dataset(dir.path(), &rows(5), [4, 4]);
    std::fs::remove_file(dir.path().join("train/101.png")).unwrap();
    std::fs::remove_file(dir.path().join("train/103.png")).unwrap();
    write_png(&dir.path().join("train/999.png"), 999, 4, 4);
    let (_, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    assert_eq!(ds.report.rows_in_csv, 5);
    assert_eq!(ds.report.missing_images, [101, 103]);
    assert_eq!(ds.report.unlisted_images.len(), 1);
    assert!(ds.report.unlisted_images[0].ends_with("999.png"));
    assert_eq!(dataset::ids(&ds.frame).unwrap(), [100, 102, 104]);
}

#[test]
fn bad_rows_name_file_line_and_value() {
    let cases = [
        (
            "id,boneage,male\n1,12,True\n2,twelve,False\n",
            "line 3",
            "\"twelve\"",
        ),
        ("id,boneage,male\n1,12,True\n2,301,False\n", "line 3", "301"),
        ("id,boneage,male\n1,-1,True\n", "line 2", "-1"),
        ("id,boneage,male\n1,12,Yes\n", "line 2", "\"Yes\""),
        (
            "id,boneage,male\n1,12,True\n2,13,True\n1,14,False\n",
            "line 4",
            "duplicate id 1",
        ),
        ("Case ID,Sex\n1,X\n", "line 2", "\"X\""),
        ("name,age\nx,1\n", "line 1", "need an id column"),
    ];
    for (text, line, value) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("train")).unwrap();
        std::fs::write(dir.path().join("train.csv"), text).unwrap();
        let err = Dataset::from_dir(dir.path(), Split::Train, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.csv"), "{err}");
        assert!(err.contains(line), "{line} in {err}");
        assert!(err.contains(value), "{value} in {err}");
    }
}

#[test]
fn no_dataset_names_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::from_dir(dir.path(), Split::Train, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.csv") && err.contains("boneage-training-dataset.csv"),
        "{err}"
    );
}

#[test]
#[cfg_attr(not(shared_data), ignore = "../shared/data is absent")]
fn real_rsna_128_loads_completely() {
    let (layout, ds) = Dataset::from_dir(&shared_data("rsna-128"), Split::Train, None).unwrap();
    assert_eq!(layout, Layout::Recipe);
    assert_eq!(ds.frame.height(), 12_611);
    assert!(ds.report.missing_images.is_empty() && ds.report.unlisted_images.is_empty());
    let ages = dataset::ages(&ds.frame).unwrap();
    let mean = ages.iter().sum::<f64>() / ages.len() as f64;
    assert!((mean - 127.3).abs() < 0.5, "{mean}");
}

#[test]
fn the_recipe_holds_out_fold_10_of_10() {
    let dir = tempfile::tempdir().unwrap();
    common::recipe_dataset(dir.path(), &common::rows(95), [4, 4]);
    let (_, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    let config = Config::default();
    let (train, val) = config.fold_frames(dir.path()).unwrap();
    assert_eq!((train.height(), val.height()), (90, 5));
    assert_eq!(
        dataset::ids(&val).unwrap(),
        dataset::ids(&ds.frame).unwrap()[90..]
    );
}
