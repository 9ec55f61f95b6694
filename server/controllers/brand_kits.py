"""``/brand-kits/``: a project's fonts, colours and logo, named by timelines (``brand_kit``) for their text and
caption defaults."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from msgspec import Struct
from pydantic import BaseModel, ConfigDict, Field

from operators.storage import Storage
from scheduler.brand.checks import check_kit_assets
from scheduler.brand.store import BrandKitNotFoundError, BrandKitStore
from scheduler.records.assets import AssetStore
from server.deps import provide_assets, provide_brand_kits, provide_storage
from server.openapi import responses

__all__ = ["BrandColors", "BrandKit", "BrandKitController", "BrandKitCreate"]

_ID_PATTERN = r"^[^/\\\x00-\x1f\x7f]+$"
_HEX = Field(None, pattern=r"^#[0-9a-fA-F]{6}$", description="#RRGGBB")


class BrandColors(BaseModel):
    """The kit's colours: ``text`` for captions and titles, ``accent`` for highlights and keywords, ``primary``
    for highlight boxes, ``background`` for the styles drawn on a box."""

    model_config = ConfigDict(extra="forbid")

    primary: str | None = _HEX
    accent: str | None = _HEX
    text: str | None = _HEX
    background: str | None = _HEX


class BrandKitCreate(BaseModel):
    """The body of ``POST /brand-kits/``: font assets (the first is the default), colours and a logo."""

    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(min_length=1, max_length=200, pattern=_ID_PATTERN)
    name: str | None = Field(None, max_length=200)
    fonts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=20)
    colors: BrandColors = Field(default_factory=BrandColors)
    logo: str | None = Field(None, min_length=1, max_length=200)


class BrandKit(Struct, kw_only=True):
    """A brand kit; timelines name it by ``id`` in ``brand_kit``."""

    id: str
    project_id: str
    name: str | None
    fonts: list[str]
    colors: dict[str, str | None]
    logo: str | None
    created_at: str


class BrandKitController(Controller):
    path = "/brand-kits"
    tags = ["brand-kits"]
    dependencies = {
        "brand_kits": Provide(provide_brand_kits, sync_to_thread=False),
        "assets": Provide(provide_assets, sync_to_thread=False),
        "storage": Provide(provide_storage, sync_to_thread=False),
    }

    @post("/", status_code=201, summary="Create a brand kit", operation_id="createBrandKit",
          responses=responses(201, BrandKit, 400, 422, 503, description="The new brand kit"))
    async def create_brand_kit(self, brand_kits: BrandKitStore, assets: AssetStore, storage: Storage,
                               data: BrandKitCreate) -> dict[str, Any]:
        """Fonts must be TTF/OTF assets of the project that load; the logo an image asset of it (else 422).

        ``curl -X POST http://localhost:8000/v1/brand-kits/ -H 'Content-Type: application/json' -d
        '{"project_id": "proj_123", "fonts": ["asset_…"], "colors": {"accent": "#ff3366", "text": "#ffffff"}}'``
        """
        await check_kit_assets(project_id=data.project_id, fonts=data.fonts, logo=data.logo, assets=assets,
                               storage=storage)
        return await brand_kits.create(project_id=data.project_id, name=data.name, fonts=data.fonts,
                                       colors=data.colors.model_dump(), logo=data.logo)

    @get("/", summary="A project's brand kits, newest first", operation_id="listBrandKits",
         responses=responses(200, list[BrandKit], 422, 503, description="Brand kits, newest first"))
    async def list_brand_kits(self, brand_kits: BrandKitStore,
                              project_id: Annotated[str, Parameter(min_length=1, max_length=200)],
                              limit: Annotated[int, Parameter(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        """``curl "http://localhost:8000/v1/brand-kits/?project_id=proj_123"``"""
        return await brand_kits.list(project_id, limit=limit)

    @get("/{kit_id:str}", summary="A brand kit", operation_id="getBrandKit",
         responses=responses(200, BrandKit, 404, 503, description="The brand kit"))
    async def get_brand_kit(self, brand_kits: BrandKitStore, kit_id: str) -> dict[str, Any]:
        """``curl http://localhost:8000/v1/brand-kits/bk_…``"""
        try:
            return await brand_kits.get(kit_id)
        except BrandKitNotFoundError as exc:
            raise NotFoundException(detail=str(exc)) from None

    @delete("/{kit_id:str}", status_code=204, summary="Delete a brand kit", operation_id="deleteBrandKit",
            responses=responses(None, None, 404, 503))
    async def delete_brand_kit(self, brand_kits: BrandKitStore, kit_id: str) -> None:
        """Timelines that name it are refused (422) from then on. ``curl -X DELETE …/v1/brand-kits/bk_…``"""
        try:
            await brand_kits.delete(kit_id)
        except BrandKitNotFoundError as exc:
            raise NotFoundException(detail=str(exc)) from None
