//! The decode-once cache and the batch loader over it.
mod common;

use std::time::SystemTime;

use bone_age::cache::{CacheSource, ImageCache};
use bone_age::dataset::{self, Dataset, Split};
use bone_age::{AugmentConfig, BatchLoader, LoaderConfig, Preprocess, SexFilter, Target};
use tch::{Device, Kind};

/// Whole 24×20 images, 2-pixel margin fraction 0.1 → cached 24×20 around a 20×16 window? No:
/// whole-image mode at scale 1 with margin 0.1 gives out 24×20 and cached 28×24 (zero border).
fn small() -> Preprocess {
    Preprocess {
        whole_image: true,
        scale: 1.0,
        margin: 0.1,
        ..Default::default()
    }
}

fn dataset(n: usize) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    common::recipe_dataset(dir.path(), &common::rows(n), [24, 20]);
    let (_, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    (dir, ds)
}

#[test]
fn builds_once_then_loads_without_decoding() {
    let (dir, ds) = dataset(6);
    let cache_dir = dir.path().join("cache");
    let built = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(built.source, CacheSource::Built);
    assert_eq!(built.images.size(), [6, 1, 28, 24]);
    assert_eq!(built.geometry.out, [24, 20]);
    assert_eq!(built.images.kind(), Kind::Uint8);

    // Overwrite every PNG with garbage of the same size and mtime: the key is unchanged,
    // so a load that decoded anything would fail.
    for p in dataset::paths(&ds.frame).unwrap() {
        let (len, mtime) = (
            std::fs::metadata(&p).unwrap().len(),
            std::fs::metadata(&p).unwrap().modified().unwrap(),
        );
        std::fs::write(&p, vec![0u8; len as usize]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    let loaded = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(loaded.source, CacheSource::Loaded);
    assert!(loaded.images.equal(&built.images));
    assert_eq!(loaded.ids, built.ids);
}

#[test]
fn changed_inputs_or_parameters_rebuild() {
    let (dir, ds) = dataset(3);
    let cache_dir = dir.path().join("cache");
    ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    let margin = Preprocess {
        margin: 0.2,
        ..small()
    };
    assert_eq!(
        ImageCache::open(&ds.frame, &margin, &cache_dir)
            .unwrap()
            .source,
        CacheSource::Built
    );
    let p = &dataset::paths(&ds.frame).unwrap()[0];
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    assert_eq!(
        ImageCache::open(&ds.frame, &small(), &cache_dir)
            .unwrap()
            .source,
        CacheSource::Built
    );
}

#[test]
fn corrupt_or_partial_cache_files_are_rebuilt() {
    let (dir, ds) = dataset(4);
    let cache_dir = dir.path().join("cache");
    let good = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    let bytes = std::fs::read(&good.path).unwrap();

    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 0xff; // one pixel
    std::fs::write(&good.path, &flipped).unwrap();
    let again = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(again.source, CacheSource::Built);
    assert!(again.images.equal(&good.images));

    std::fs::write(&good.path, &bytes[..bytes.len() / 2]).unwrap(); // truncated
    assert_eq!(
        ImageCache::open(&ds.frame, &small(), &cache_dir)
            .unwrap()
            .source,
        CacheSource::Built
    );
    let reloaded = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(
        reloaded.source,
        CacheSource::Loaded,
        "the rebuilt file is valid"
    );
    assert!(reloaded.images.equal(&good.images));
    let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no partial files left: {leftovers:?}");
}

#[test]
fn unreadable_images_are_left_out_by_id_and_none_readable_is_an_error() {
    let (dir, ds) = dataset(5);
    let paths = dataset::paths(&ds.frame).unwrap();
    std::fs::write(&paths[1], b"junk").unwrap();
    std::fs::write(&paths[3], b"more junk").unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(cache.skipped, [101, 103], "the unreadable ones, by id");
    let l = BatchLoader::new(
        &cache,
        &ds.frame,
        Target::Age,
        LoaderConfig::default(),
        None,
        Device::Cpu,
        42,
    )
    .unwrap();
    assert_eq!(l.len(), 3, "the loader leaves them out");
    // The cache file remembers them.
    let again = ImageCache::open(&ds.frame, &small(), &cache_dir).unwrap();
    assert_eq!(
        (again.source, again.skipped),
        (CacheSource::Loaded, vec![101, 103])
    );
    // When no image can be read, nothing is cached and every file is listed.
    for p in &paths {
        std::fs::write(p, b"junk").unwrap();
    }
    let empty = dir.path().join("cache2");
    let err = ImageCache::open(&ds.frame, &small(), &empty)
        .unwrap_err()
        .to_string();
    assert!(err.contains("5 of 5 images"), "{err}");
    assert!(err.contains("101.png") && err.contains("103.png"), "{err}");
    assert!(!empty.exists() || std::fs::read_dir(&empty).unwrap().next().is_none());
}

fn loader(
    n: usize,
    config: LoaderConfig,
    augment: Option<AugmentConfig>,
) -> (tempfile::TempDir, BatchLoader) {
    let (dir, ds) = dataset(n);
    let cache = ImageCache::open(&ds.frame, &small(), &dir.path().join("cache")).unwrap();
    let l = BatchLoader::new(
        &cache,
        &ds.frame,
        Target::Age,
        config,
        augment,
        Device::Cpu,
        42,
    )
    .unwrap();
    (dir, l)
}

#[test]
fn batches_have_documented_shapes_and_targets() {
    let (_d, l) = loader(
        10,
        LoaderConfig {
            batch_size: 4,
            ..Default::default()
        },
        None,
    );
    let batches: Vec<_> = l.epoch(0).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].images.size(), [4, 1, 24, 20]);
    assert_eq!(batches[0].targets.size(), [4, 1]);
    assert_eq!(batches[2].images.size()[0], 2, "last partial batch kept");
    // Without augmentation: in order, targets (months − 120) / 120, pixels in [−1, 1].
    assert_eq!(batches[0].ids, [100, 101, 102, 103]);
    let t = Vec::<f32>::try_from(batches[0].targets.flatten(0, 1)).unwrap();
    assert!((t[1] - ((12.0 + 17.0) - 120.0) / 120.0).abs() < 1e-6);
    let (lo, hi) = (
        f64::try_from(batches[0].images.min()).unwrap(),
        f64::try_from(batches[0].images.max()).unwrap(),
    );
    assert!(lo >= -1.0 && hi <= 1.0 && hi > lo);
}

#[test]
fn shuffling_is_seeded_and_drop_last_and_sex_filter_apply() {
    let cfg = LoaderConfig {
        batch_size: 3,
        drop_last: true,
        ..Default::default()
    };
    let (_d, l) = loader(10, cfg.clone(), Some(AugmentConfig::default()));
    let ids = |e: u64| l.epoch(e).flat_map(|b| b.ids).collect::<Vec<_>>();
    assert_eq!(l.num_batches(), 3);
    assert_eq!(ids(0).len(), 9, "drop_last");
    assert_eq!(ids(0), ids(0), "same epoch, same order");
    assert_ne!(ids(0), ids(1), "epochs reshuffle");
    let a: Vec<_> = l.epoch(3).map(|b| b.images).collect();
    let b: Vec<_> = l.epoch(3).map(|b| b.images).collect();
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.equal(y)),
        "augmentation is seeded"
    );

    let (_d, males) = loader(
        10,
        LoaderConfig {
            sex: SexFilter::Male,
            ..cfg
        },
        None,
    );
    assert_eq!(males.len(), 5);
    assert!(males
        .epoch(0)
        .all(|b| b.male.min().double_value(&[]) == 1.0));
}

#[test]
fn test_metrics_use_the_labelled_test_split_else_the_held_out_fold() {
    let dir = tempfile::tempdir().unwrap();
    let root = common::recipe_dataset(dir.path(), &common::rows(20), [40, 32]);
    let config = bone_age::Config::default();
    // No test split: the recipe's held-out fold (10 of 10) of the 20 training rows.
    let (what, frame) = bone_age::evaluate::test_frame(&config, &root).unwrap();
    assert_eq!(
        (what.as_str(), frame.height()),
        ("held-out fold 10 of 10", 2)
    );
    // An unlabelled test split (the Kaggle test set) is not scored either.
    std::fs::create_dir_all(root.join("test")).unwrap();
    common::write_png(&root.join("test/900.png"), 900, 32, 40);
    std::fs::write(root.join("test.csv"), "Case ID,Sex\n900,M\n").unwrap();
    let (what, _) = bone_age::evaluate::test_frame(&config, &root).unwrap();
    assert!(what.starts_with("held-out fold"), "{what}");
    // A labelled one is.
    std::fs::write(root.join("test.csv"), "id,boneage,male\n900,100,True\n").unwrap();
    let (what, frame) = bone_age::evaluate::test_frame(&config, &root).unwrap();
    assert!(
        what.starts_with("test split") && frame.height() == 1,
        "{what}"
    );
    // A broken one is an error, not a silent fallback.
    std::fs::write(root.join("test.csv"), "id,boneage,male\n900,old,True\n").unwrap();
    assert!(bone_age::evaluate::test_frame(&config, &root).is_err());
}
