"""Matrix transforms: products with known matrices, Gramians, inverses, orthonormal factors.

matvec, mtimes, gram, inv, invsqrtm, invtransp, orth, normalize and transpose. Those with
a factorization (inv, invsqrtm, invtransp, orth, normalize) override ``linearize`` so that
one factorization serves every jvp/vjp product at a point.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from sdf.expr import Constant, Node
from sdf.transforms._base import BlockRoute, ExprLike, Linearization
from sdf.transforms._util import (
    Arrays, Base, CachedLinearization, fail, frozen, is_known, numeric, readonly, Shape,
)

__all__ = [
    "CTranspose", "Gram", "Inv", "Invsqrtm", "Invtransp", "MTimes", "MatVec", "Normalize",
    "Orth", "Transpose", "ctranspose", "gram", "inv", "invsqrtm", "invtransp", "matvec",
    "mtimes", "normalize", "orth", "transpose",
]

Side = Literal["left", "right"]
#: A known matrix: dense, scipy.sparse, or a Constant expression.
KnownMatrix: TypeAlias = ArrayLike | Constant | sp.sparray | sp.spmatrix


def _square_check(name: str, shape: Shape) -> None:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise fail(name, f"input must be a square matrix, got shape {tuple(shape)}")


class MatVec(Base[np.ndarray]):
    """x = X @ z (``side="left"``) or x = z @ X (``side="right"``) for a known matrix X.

    X may be a dense array or a scipy.sparse matrix; z a vector or a matrix.
    """

    name = "matvec"
    complex_vjp = "transpose"

    def __init__(self, matrix: KnownMatrix, side: Side = "left") -> None:
        if side not in ("left", "right"):
            raise fail("matvec", f"side must be 'left' or 'right', got {side!r}")
        if sp.issparse(matrix):
            dtype = np.complex128 if np.dtype(getattr(matrix, "dtype")).kind == "c" else float
            matrix = sp.csr_array(matrix, dtype=dtype, copy=True)
        else:
            if isinstance(matrix, Constant):
                matrix = matrix.value
            matrix = frozen(matrix, "matvec", "matrix")
        if matrix.ndim != 2:
            raise fail("matvec", f"matrix must be 2-D, got shape {matrix.shape}")
        self.matrix = matrix
        self.side = side

    def params(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "side": self.side}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        m, n = self.matrix.shape
        if self.side == "left":
            if len(shape) not in (1, 2) or shape[0] != n:
                raise fail(
                    "matvec",
                    f"matrix of shape {(m, n)} times input of shape {shape}: "
                    f"the input needs {n} rows",
                )
            return (m, *shape[1:])
        if len(shape) not in (1, 2) or shape[-1] != m:
            raise fail(
                "matvec",
                f"input of shape {shape} times matrix of shape {(m, n)}: "
                f"the input needs {m} columns",
            )
        return (*shape[:-1], n)

    def _apply(self, z: np.ndarray) -> np.ndarray:
        z = numeric(z)
        return np.asarray(self.matrix @ z if self.side == "left" else z @ self.matrix)

    def value(self, z: np.ndarray) -> np.ndarray:
        return self._apply(z)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self._apply(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        g = numeric(g)
        return np.asarray(self.matrix.T @ g if self.side == "left" else g @ self.matrix.T)

    #: Complex blocks (and values) map through it too: ``J^H J`` as below, ``X^H`` for ``X^T``.
    routes_complex_blocks = True

    def route_block(self, lin: Linearization, block: np.ndarray) -> BlockRoute:
        # x = X z: J^H J = (X^H X) ⊗ W exactly when the rows of x share the block W;
        # x = z X: each row's block X W X^H
        if np.ndim(lin.z) != 2:
            return None
        W = block if block.ndim == 2 else block.mean(axis=0)
        X = self.matrix
        Xh = X.conj().T if np.iscomplexobj(X) else X.T
        if self.side == "left":
            gram = Xh @ X
            return ("kron", np.asarray(gram.toarray() if sp.issparse(gram) else gram), W)
        XW = np.asarray(X @ W)
        return ("rows", np.asarray(XW @ Xh if not sp.issparse(X) else (Xh.T @ XW.T).T))


class MTimes(Base[Arrays]):
    """x = a @ b for two matrix expressions (two inputs)."""

    name = "mtimes"
    complex_vjp = "transpose"
    n_inputs = 2

    def output_shape(self, *shapes: Shape) -> Shape:
        sa, sb = (tuple(s) for s in shapes)
        if len(sa) != 2 or len(sb) != 2 or sa[1] != sb[0]:
            raise fail("mtimes", f"inputs of shapes {sa} and {sb} cannot be multiplied")
        return (sa[0], sb[1])

    def value(self, z: Arrays) -> np.ndarray:
        return z[0] @ z[1]

    def jvp(self, z: Arrays, dz: Arrays) -> np.ndarray:
        return dz[0] @ z[1] + z[0] @ dz[1]

    def vjp(self, z: Arrays, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return g @ z[1].T, z[0].T @ g


class Gram(Base[np.ndarray]):
    """x = zᵀ z (an R x R Gramian of an I x R factor); z^H z for complex z.

    The complex Gramian (Hermitian, as Tensorlab's ``X'*X``) is not holomorphic: ``jvp``
    is ``dz^H z + z^H dz`` and ``vjp`` its adjoint ``z (g + g^H)`` for ``Re <a, b>``.
    """

    name = "gram"
    complex_vjp = "adjoint"

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes[0]) != 2:
            raise fail("gram", f"input must be a matrix, got shape {tuple(shapes[0])}")
        return (shapes[0][1], shapes[0][1])

    def value(self, z: np.ndarray) -> np.ndarray:
        return z.conj().T @ z if np.iscomplexobj(z) else z.T @ z

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(z) or np.iscomplexobj(dz):
            p = np.conj(dz).T @ z
            return p + p.conj().T
        p = dz.T @ z
        return p + p.T

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(z) or np.iscomplexobj(g):
            return z @ (g + np.conj(g).T)
        return z @ (g + g.T)


class Inv(Base[np.ndarray]):
    """x = z⁻¹ for a square, invertible z; dx = -x dz x."""

    name = "inv"
    complex_vjp = "transpose"

    def output_shape(self, *shapes: Shape) -> Shape:
        _square_check(self.name, shapes[0])
        return tuple(shapes[0])

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.linalg.inv(z)

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        x = np.linalg.inv(z)
        return CachedLinearization(
            self, z, x, lambda dz: -x @ dz @ x, lambda g: -x.T @ g @ x.T
        )

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


class Invtransp(Inv):
    """x = z⁻ᵀ (inverse transpose) for a square, invertible z; dx = -x dzᵀ x."""

    name = "invtransp"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.linalg.inv(z).T

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        x = np.linalg.inv(z).T
        return CachedLinearization(
            self, z, x, lambda dz: -x @ dz.T @ x, lambda g: -x @ g.T @ x
        )


def _sym_eig(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvectors V, square roots σ of the eigenvalues, and K_ij = -1/(σ_i σ_j (σ_i + σ_j)).

    K holds the divided differences of f(λ) = λ^(-1/2), so the Fréchet derivative of
    S -> S^(-1/2) in direction E is V (K ∘ (Vᵀ E V)) Vᵀ (self-adjoint in E).
    """
    lam, v = np.linalg.eigh(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        sig = np.sqrt(np.where(lam > 0, lam, np.nan))
        k = -1.0 / (sig[:, None] * sig[None, :] * (sig[:, None] + sig[None, :]))
    return v, sig, k


def _frechet(v: np.ndarray, k: np.ndarray, e: np.ndarray) -> np.ndarray:
    return v @ (k * (v.T @ e @ v)) @ v.T


class Invsqrtm(Base[np.ndarray]):
    """x = S^(-1/2), S = (z + zᵀ)/2 symmetric positive definite (eigendecomposition).

    The input is symmetrized first, so only its symmetric part matters; a matrix that is
    not positive definite gives NaN entries.
    """

    name = "invsqrtm"

    def output_shape(self, *shapes: Shape) -> Shape:
        _square_check(self.name, shapes[0])
        return tuple(shapes[0])

    def value(self, z: np.ndarray) -> np.ndarray:
        return self.linearize(z).value

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        z = numeric(z)
        v, sig, k = _sym_eig(0.5 * (z + z.T))
        x = (v / sig) @ v.T

        def jvp(dz: np.ndarray) -> np.ndarray:
            return _frechet(v, k, 0.5 * (dz + dz.T))

        return CachedLinearization(self, z, x, jvp, jvp)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


class Orth(Base[np.ndarray]):
    """x = z (zᵀz)^(-1/2): the orthonormal polar factor of z (I x R, rank R, I >= R).

    Of all matrices with orthonormal columns spanning range(z), x is the closest to z.
    With S = zᵀz = V diag(σ²) Vᵀ and W = S^(-1/2): dx = dz W + z dW, where
    dW = V (K ∘ (Vᵀ dS V)) Vᵀ, dS = dzᵀz + zᵀdz, K_ij = -1/(σ_i σ_j (σ_i + σ_j));
    the adjoint is g W + z (M + Mᵀ) with M = V (K ∘ (Vᵀ zᵀg V)) Vᵀ.

    Complex z: x = z (z^H z)^(-1/2), the unitary polar factor (orthonormal columns for
    the Hermitian inner product), with every transpose above a conjugate transpose. The
    map is not holomorphic: ``jvp`` and ``vjp`` are the derivative of the real and
    imaginary parts and its adjoint for ``Re <a, b>``.
    """

    name = "orth"
    complex_vjp = "adjoint"

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if len(shape) != 2 or shape[0] < shape[1]:
            raise fail("orth", f"input must be a tall matrix (rows >= columns), got shape {shape}")
        return shape

    def value(self, z: np.ndarray) -> np.ndarray:
        return self.linearize(z).value

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        z = numeric(z)
        if np.iscomplexobj(z):
            return self._linearize_complex(z)
        v, sig, k = _sym_eig(z.T @ z)
        w = (v / sig) @ v.T
        x = z @ w

        def jvp(dz: np.ndarray) -> np.ndarray:
            p = dz.T @ z
            return dz @ w + z @ _frechet(v, k, p + p.T)

        def vjp(g: np.ndarray) -> np.ndarray:
            m = _frechet(v, k, z.T @ g)
            return g @ w + z @ (m + m.T)

        return CachedLinearization(self, z, x, jvp, vjp)

    def _linearize_complex(self, z: np.ndarray) -> CachedLinearization:
        v, sig, k = _sym_eig(z.conj().T @ z)  # Hermitian: eigh, real eigenvalues
        vh = v.conj().T
        w = (v / sig) @ vh
        x = z @ w

        def frechet(e: np.ndarray) -> np.ndarray:
            return v @ (k * (vh @ e @ v)) @ vh

        def jvp(dz: np.ndarray) -> np.ndarray:
            p = numeric(dz).conj().T @ z
            return dz @ w + z @ frechet(p + p.conj().T)

        def vjp(g: np.ndarray) -> np.ndarray:
            m = frechet(z.conj().T @ g)
            return g @ w + z @ (m + m.conj().T)

        return CachedLinearization(self, z, x, jvp, vjp)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


class Normalize(Base[np.ndarray]):
    """x[:, r] = z[:, r] / ‖z[:, r]‖: columns scaled to unit 2-norm (a vector: x = z/‖z‖).

    Complex columns are scaled to unit norm too (``‖z‖² = z^H z``); the map is not
    holomorphic, and its derivative is given for the real and imaginary parts.
    """

    name = "normalize"
    complex_vjp = "adjoint"

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes[0]) not in (1, 2):
            raise fail("normalize", f"input must be a vector or matrix, got shape {shapes[0]}")
        return tuple(shapes[0])

    def value(self, z: np.ndarray) -> np.ndarray:
        z = numeric(z)
        return z / np.linalg.norm(z, axis=0, keepdims=z.ndim > 1)

    def linearize(self, z: np.ndarray) -> CachedLinearization:
        z = numeric(z)
        nrm = np.linalg.norm(z, axis=0, keepdims=z.ndim > 1)
        x = z / nrm

        def project(d: Any) -> np.ndarray:  # (I - x xᵀ) d / ‖z‖ per column: self-adjoint
            if np.iscomplexobj(x) or np.iscomplexobj(d):
                # (d - x Re(x^H d)) / ‖z‖: self-adjoint for Re <a, b> as well.
                return (d - x * np.real(np.sum(np.conj(x) * d, axis=0))) / nrm
            return (d - x * np.sum(x * d, axis=0)) / nrm

        return CachedLinearization(self, z, x, project, project)

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return self.linearize(z).jvp(dz)

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.linearize(z).vjp(g)


class Transpose(Base[np.ndarray]):
    """x = z.transpose(axes) (default: reverse the axes; a matrix becomes zᵀ). Read-only views."""

    name = "transpose"
    complex_vjp = "transpose"

    def __init__(self, axes: tuple[int, ...] | None = None) -> None:
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def params(self) -> dict[str, Any]:
        return {"axes": self.axes}

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if self.axes is not None and sorted(self.axes) != list(range(len(shape))):
            raise fail(
                "transpose",
                f"axes {self.axes} is not a permutation of the {len(shape)} input axes",
            )
        axes = self.axes if self.axes is not None else tuple(reversed(range(len(shape))))
        return tuple(shape[a] for a in axes)

    def value(self, z: np.ndarray) -> np.ndarray:
        return readonly(numeric(z).transpose(self.axes))

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return readonly(numeric(dz).transpose(self.axes))

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        g = numeric(g)
        inverse = None if self.axes is None else tuple(np.argsort(self.axes))
        return readonly(g.transpose(inverse))


class CTranspose(Base[np.ndarray]):
    """x = conj(z).T: the conjugate (Hermitian) transpose of a matrix (``zᵀ`` when real).

    Not holomorphic: ``jvp`` is ``conj(dz).T`` and ``vjp`` the adjoint ``conj(g).T`` of
    it for the real inner product ``Re <a, b>``.
    """

    name = "ctranspose"
    complex_vjp = "adjoint"

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = tuple(shapes[0])
        if len(shape) != 2:
            raise fail("ctranspose", f"input must be a matrix, got shape {shape}")
        return (shape[1], shape[0])

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.conj(numeric(z)).T

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        return np.conj(numeric(dz)).T

    def vjp(self, z: np.ndarray, g: np.ndarray) -> np.ndarray:
        return np.conj(numeric(g)).T


# ----------------------------------------------------------------------------- functions


def ctranspose(z: ExprLike, *, name: str | None = None) -> Node:
    """x = conj(z).T, the conjugate transpose of a matrix expression.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.CTranspose().value(np.array([[1 + 2j, 3.0]]))
    array([[1.-2.j],
           [3.-0.j]])
    """
    return CTranspose()(z, name=name)


def matvec(
    a: ExprLike | KnownMatrix, b: ExprLike | KnownMatrix | None = None, *,
    matrix: KnownMatrix | None = None, side: Side | None = None, name: str | None = None,
) -> Node:
    """x = X @ z or x = z @ X for a known matrix X (dense or scipy.sparse) and expression z.

    ``tf.matvec(X, z)`` multiplies on the left, ``tf.matvec(z, X)`` on the right: the known
    operand (an array, a sparse matrix or a Constant) is the matrix. Keyword form:
    ``tf.matvec(z, matrix=X, side="left")``. For two unknown expressions use
    :func:`mtimes`.

    Examples
    --------
    >>> import numpy as np, sdf
    >>> from sdf import transforms as tf
    >>> X = np.ones((5, 3))
    >>> a = sdf.Variable.random((3, 2), seed=0)
    >>> tf.matvec(X, a).shape, tf.matvec(a.value.T, matrix=X.T, side="right").shape
    ((5, 2), (2, 5))
    """
    if matrix is not None:
        if b is not None:
            raise fail("matvec", "give the matrix either positionally or as matrix=, not both")
        return MatVec(matrix, side or "left")(a, name=name)
    if b is None:
        raise fail("matvec", "needs a known matrix and an expression: matvec(X, z) or matvec(z, X)")
    if is_known(a) or sp.issparse(a):
        if side not in (None, "left"):
            raise fail("matvec", f"the matrix is the first operand but side={side!r}")
        return MatVec(a, "left")(b, name=name)
    if is_known(b) or sp.issparse(b):
        if side not in (None, "right"):
            raise fail("matvec", f"the matrix is the second operand but side={side!r}")
        return MatVec(b, "right")(a, name=name)
    raise fail(
        "matvec", "both operands are expressions; use tf.mtimes(a, b) for their product"
    )


def mtimes(a: ExprLike, b: ExprLike, *, name: str | None = None) -> Node:
    """x = a @ b for two matrix expressions.

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.mtimes(sdf.Variable.random((4, 2)), sdf.Variable.random((2, 3))).shape
    (4, 3)
    """
    return MTimes()(a, b, name=name)


def gram(z: ExprLike, *, name: str | None = None) -> Node:
    """x = zᵀ z.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Gram().value(np.array([[1.0, 2.0]]))
    array([[1., 2.],
           [2., 4.]])
    """
    return Gram()(z, name=name)


def inv(z: ExprLike, *, name: str | None = None) -> Node:
    """x = z⁻¹.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Inv().value(np.array([[2.0, 0.0], [0.0, 4.0]]))
    array([[0.5 , 0.  ],
           [0.  , 0.25]])
    """
    return Inv()(z, name=name)


def invtransp(z: ExprLike, *, name: str | None = None) -> Node:
    """x = z⁻ᵀ.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Invtransp().value(np.array([[1.0, 1.0], [0.0, 1.0]]))
    array([[ 1.,  0.],
           [-1.,  1.]])
    """
    return Invtransp()(z, name=name)


def invsqrtm(z: ExprLike, *, name: str | None = None) -> Node:
    """x = ((z + zᵀ)/2)^(-1/2), the inverse square root of a symmetric positive definite matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Invsqrtm().value(np.diag([4.0, 16.0]))
    array([[0.5 , 0.  ],
           [0.  , 0.25]])
    """
    return Invsqrtm()(z, name=name)


def orth(z: ExprLike, *, name: str | None = None) -> Node:
    """x = z (zᵀz)^(-1/2): a factor with orthonormal columns spanning range(z).

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> x = tf.Orth().value(np.random.default_rng(0).standard_normal((5, 2)))
    >>> np.allclose(x.T @ x, np.eye(2))
    True
    """
    return Orth()(z, name=name)


def normalize(z: ExprLike, *, name: str | None = None) -> Node:
    """x[:, r] = z[:, r] / ‖z[:, r]‖.

    Examples
    --------
    >>> import numpy as np
    >>> from sdf import transforms as tf
    >>> tf.Normalize().value(np.array([[3.0], [4.0]]))
    array([[0.6],
           [0.8]])
    """
    return Normalize()(z, name=name)


def transpose(z: ExprLike, axes: tuple[int, ...] | None = None, *, name: str | None = None) -> Node:
    """x = z.transpose(axes) (default reverses the axes).

    Examples
    --------
    >>> import sdf
    >>> from sdf import transforms as tf
    >>> tf.transpose(sdf.Variable.random((4, 2))).shape
    (2, 4)
    """
    return Transpose(axes)(z, name=name)
