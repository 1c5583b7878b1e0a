//! Seed 000-C: copy a folder's files with 3 worker processes; each reports the file it
//! copied on a `Queue`, and the parent shows a progress line.
//!
//! The seed uses `Pool(3)`, one `apply_async` per file, and a `Manager().Queue()` (a
//! plain Queue cannot go to a Python pool task); here a plain `Queue` goes to the tasks.
//!
//! Run with `cargo run --example copy_dir -- <folder>`; with no argument it creates a
//! demo folder in the temp directory and copies that.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use multiproc::{Pool, Queue};

/// Copies `file_name` from `src` to `dst` in 1024-byte chunks, then reports it on `queue`.
fn copy_file((queue, file_name, src, dst): (Queue<String>, String, PathBuf, PathBuf)) {
    let mut f_read = fs::File::open(src.join(&file_name)).expect("open source");
    let mut f_write = fs::File::create(dst.join(&file_name)).expect("create copy");
    let mut content = [0u8; 1024];
    loop {
        let n = f_read.read(&mut content).expect("read");
        if n == 0 {
            break;
        }
        f_write.write_all(&content[..n]).expect("write");
    }
    queue.put(file_name).expect("report");
}

fn demo_folder() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("multiproc-copy-demo-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    for i in 0..12 {
        fs::write(dir.join(format!("file-{i:02}.txt")), format!("line {i}\n").repeat(200 * (i + 1)))?;
    }
    Ok(dir)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();
    let arg = std::env::args().nth(1);
    let source_folder_name = match &arg {
        Some(name) => PathBuf::from(name),
        None => demo_folder()?,
    };
    let entries = fs::read_dir(&source_folder_name)
        .map_err(|e| format!("cannot read the folder to copy, `{}`: {e}", source_folder_name.display()))?;
    let mut dest = source_folder_name.clone().into_os_string();
    dest.push("[副本]");
    let dest_folder_name = PathBuf::from(dest);
    let _ = fs::create_dir(&dest_folder_name); // an existing folder is fine

    let mut file_names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    file_names.sort();
    let all_file_num = file_names.len();
    if all_file_num == 0 {
        println!("nothing to copy in {}", source_folder_name.display());
        return Ok(());
    }

    let queue = Queue::new()?;
    let pool = Pool::new(3)?;
    for file_name in &file_names {
        let arg = (queue.clone(), file_name.clone(), source_folder_name.clone(), dest_folder_name.clone());
        pool.apply_async(copy_file, arg);
    }
    pool.close();

    let mut done = 0;
    while done < all_file_num {
        let file_name = queue.get()?;
        if let Some(i) = file_names.iter().position(|n| *n == file_name) {
            file_names.remove(i);
            done += 1;
        }
        let copy_rate = done as f64 * 100.0 / all_file_num as f64;
        print!("\r{copy_rate:.2}...({file_name}){}", " ".repeat(50));
        std::io::stdout().flush()?;
    }
    println!();
    pool.join()?;
    println!("copied {all_file_num} files to {}", dest_folder_name.display());
    if arg.is_none() {
        fs::remove_dir_all(&source_folder_name)?;
        fs::remove_dir_all(&dest_folder_name)?;
    }
    Ok(())
}
