//! Functions of several arguments for `starmap`: called with a tuple.

mod sealed {
    pub trait Sealed<Args> {}
}

/// A function of 2 to 6 arguments that [`Pool::starmap`](crate::Pool::starmap) calls with
/// the fields of a tuple: `f(a, b)` for an item `(a, b)`.
///
/// Implemented for every fn item, non-capturing closure and `fn` pointer of those
/// arities; it cannot be implemented elsewhere (it names a function across processes).
///
/// ```
/// fn add(a: u64, b: u64) -> u64 { a + b }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
/// ```
pub trait StarFn<Args>: sealed::Sealed<Args> + Copy + Send + 'static {
    /// What the function returns.
    type Output;
    /// The function's pointer type, `fn(A, B, ...) -> Output`.
    #[doc(hidden)]
    type Ptr: Copy + 'static;
    /// Calls the function with the tuple's fields.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! star_fn {
    ($($a:ident),+) => {
        impl<F, R, $($a),+> sealed::Sealed<($($a,)+)> for F where F: Fn($($a),+) -> R + Copy + Send + 'static {}
        impl<F, R, $($a: 'static),+> StarFn<($($a,)+)> for F
        where
            F: Fn($($a),+) -> R + Copy + Send + 'static,
            R: 'static,
        {
            type Output = R;
            type Ptr = fn($($a),+) -> R;
            #[allow(non_snake_case)]
            fn call(self, ($($a,)+): ($($a,)+)) -> R {
                self($($a),+)
            }
        }
    };
}

star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);
