//! `Json`, `Query` and `Path` that answer bad input with our JSON error (400 naming what
//! is wrong) instead of axum's plain-text rejections, and `Form`, the one way a page's form
//! is read, which answers with our error page.

use axum::extract::{FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AppError;
use crate::web::page::PageError;

pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(AppError::invalid("body", rejection.body_text())),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(AppError::invalid("query", rejection.body_text())),
        }
    }
}

pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            // A path that does not parse (say, not a UUID) names nothing that exists.
            Err(_) => Err(AppError::NotFound),
        }
    }
}

/// A URL-encoded form, read into a typed struct. A field repeated for each ticked checkbox
/// reads into a `Vec` (axum's own `Form` cannot), so give such a field `#[serde(default)]`:
/// no box ticked sends no field. Forms are posted by pages, so a refused one (not a form,
/// a field missing or not of its type) answers 400 with the error page.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawForm(body) = RawForm::from_request(req, state)
            .await
            .map_err(|rejection| AppError::invalid("form", rejection.body_text()))?;
        match serde_html_form::from_bytes(&body) {
            Ok(value) => Ok(Form(value)),
            Err(err) => Err(PageError(AppError::invalid("form", err.to_string()))),
        }
    }
}
