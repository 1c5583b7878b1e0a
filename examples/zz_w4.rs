use std::time::Instant;
fn double(x: u64) -> u64 { x * 2 }
fn main() {
    multiproc::init();
    let t = Instant::now();
    let p = multiproc::Pool::new(2).unwrap();
    let built = t.elapsed();
    assert_eq!(p.apply(double, 21).unwrap(), 42);
    let st = t.elapsed();
    let t = Instant::now();
    p.close(); p.join().unwrap();
    println!("W4 build {:?} first result {:?} shutdown {:?}", built, st, t.elapsed());
}
